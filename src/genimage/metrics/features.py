"""Domain feature networks: small CNN classifiers, trained by genimage, whose penultimate
activations are the features behind FD / KID / PRDC / memorization on the built-in datasets.

Why not Inception-v3: FID's Inception (Heusel et al., 2017; Szegedy et al., 2016) was trained
on 299x299 ImageNet photos; 8x8 grayscale digits or 32x32 flat shapes upsampled to 299 px are
far outside its domain, and its weights cannot be downloaded here. A classifier trained on the
domain itself gives features that separate what matters there (digit identity and style;
shape, colour and position), which is the practice of e.g. the "FD with a domain classifier"
used for MNIST-like data. Scores in these features are *not* comparable to published FID
numbers; every result carries :attr:`FeatureNet.source` saying which features were used.
For real FID, see :func:`genimage.metrics.inception.load_inception`.

Architecture (:class:`SmallCNN`): ``len(widths)`` stages of ``[conv3x3 - BN - ReLU] x 2 ->
maxpool 2x2``, then flatten -> linear ``feature_dim`` -> ReLU (= the features) -> dropout ->
linear to ``num_outputs`` logits (softmax for single-label tasks, sigmoid for multi-label).

Shipped nets live in ``genimage/weights/features/<name>/`` (``model.safetensors``,
``config.json``, ``README.md``) and are trained by ``scripts/train_feature_nets.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError
from genimage.metrics.images import check_images  # noqa: F401  (re-exported)
from genimage.utils.weights import load_safetensors, sha256_file

FEATURES_DIR = Path(__file__).resolve().parent.parent / "weights" / "features"
"""Folder of the shipped feature networks, one sub-folder per name."""

CONFIG_FORMAT = "genimage-feature-net-1"


@dataclasses.dataclass(frozen=True)
class FeatureNetConfig:
    """Architecture and task of a feature network (stored as ``config.json``).

    Attributes:
        name: Short name (``"digits"``, ``"shapes"``).
        in_channels: Image channels expected (1 or 3).
        image_size: Input side in pixels; other sizes are resized first.
        widths: Conv channels per stage (each stage halves the side).
        feature_dim: Size of the penultimate layer (the features).
        num_outputs: Number of logits.
        multilabel: ``True``: independent sigmoid outputs; ``False``: one softmax.
        class_names: Name of each output.
        source: One line saying what these features are, copied into every result.
    """

    name: str
    in_channels: int
    image_size: int
    widths: tuple[int, ...]
    feature_dim: int
    num_outputs: int
    multilabel: bool
    class_names: tuple[str, ...]
    source: str

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"], d["class_names"] = list(self.widths), list(self.class_names)
        d["format"] = CONFIG_FORMAT
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureNetConfig:
        if d.get("format") != CONFIG_FORMAT:
            raise GenimageError(
                f"not a genimage feature-net config (format {d.get('format')!r}, expected {CONFIG_FORMAT!r})"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        missing = sorted(fields - set(kw))
        if missing:
            raise GenimageError(f"feature-net config lacks {', '.join(missing)}")
        kw["widths"], kw["class_names"] = tuple(kw["widths"]), tuple(kw["class_names"])
        return cls(**kw)


class SmallCNN(nn.Module):
    """``[conv-BN-ReLU x2, maxpool] x stages -> linear -> ReLU (features) -> dropout -> linear``."""

    def __init__(self, config: FeatureNetConfig, dropout: float = 0.2) -> None:
        super().__init__()
        side = config.image_size
        layers: list[nn.Module] = []
        c = config.in_channels
        for w in config.widths:
            if side % 2:
                raise GenimageError(f"image_size {config.image_size} cannot be halved {len(config.widths)} times")
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, side = w, side // 2
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Linear(c * side * side, config.feature_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(config.feature_dim, config.num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(N, feature_dim)`` (after the ReLU)."""
        return F.relu(self.embed(self.trunk(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_outputs)``."""
        return self.head(self.drop(self.features(x)))


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` to ``size x size``: area averaging when shrinking, bilinear when enlarging."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if h >= size and w >= size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class FeatureNet:
    """A loaded feature network: ``features(images)``, ``classify(images)``, and its provenance.

    Attributes:
        config: The :class:`FeatureNetConfig`.
        module: The :class:`SmallCNN` in eval mode.
        weights_sha256: sha256 of the weights file ("" for an unsaved net).
        source: What the features are, e.g. ``"genimage-digits-cnn (domain features; ...)"``.
    """

    def __init__(self, module: SmallCNN, config: FeatureNetConfig, weights_sha256: str = "") -> None:
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.config = config
        self.weights_sha256 = weights_sha256
        self.source = config.source

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check channels and resize to the net's input size (area when shrinking)."""
        images = check_images(images, self.config.in_channels)
        return resize_images(images, self.config.image_size)

    @torch.no_grad()
    def _batched(self, images: torch.Tensor, fn, batch_size: int) -> torch.Tensor:
        if batch_size < 1:
            raise GenimageError(f"batch_size must be >= 1, got {batch_size}")
        outs = [fn(self.prepare(images[i:i + batch_size])) for i in range(0, images.shape[0], batch_size)]
        if not outs:
            raise GenimageError("no images given")
        return torch.cat(outs)

    def features(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Penultimate activations ``(N, D)`` (float32) of images ``(N, C, H, W)`` in ``[-1, 1]``."""
        return self._batched(images, self.module.features, batch_size)

    def logits(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Output logits ``(N, num_outputs)``."""
        return self._batched(images, self.module, batch_size)

    def classify(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Class probabilities ``(N, classes)``: softmax, or per-output sigmoid for multi-label nets."""
        z = self.logits(images, batch_size)
        return torch.sigmoid(z) if self.config.multilabel else torch.softmax(z, dim=1)


def available_feature_nets() -> list[str]:
    """Names of the shipped feature networks."""
    if not FEATURES_DIR.is_dir():
        return []
    return sorted(p.name for p in FEATURES_DIR.iterdir() if (p / "config.json").is_file())


def save_feature_net(module: SmallCNN, config: FeatureNetConfig, folder: str | Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (atomically)."""
    from genimage.utils.weights import save_safetensors, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(module.state_dict(), folder / "model.safetensors")
    write_json_atomic(config.to_json(), folder / "config.json")


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if (p / "config.json").is_file():
        return p.resolve()
    if "/" not in str(name_or_path) and (FEATURES_DIR / str(name_or_path) / "config.json").is_file():
        return (FEATURES_DIR / str(name_or_path)).resolve()
    names = ", ".join(available_feature_nets()) or "none installed"
    raise GenimageError(
        f"feature network {str(name_or_path)!r} not found: give a shipped name ({names}) or a folder with "
        "config.json and model.safetensors (train one with scripts/train_feature_nets.py)"
    )


@functools.lru_cache(maxsize=8)
def _load(folder: Path) -> FeatureNet:
    try:
        config = FeatureNetConfig.from_json(json.loads((folder / "config.json").read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise GenimageError(f"{folder / 'config.json'} is not a valid feature-net config: {exc}") from None
    module = SmallCNN(config)
    state = load_safetensors(folder / "model.safetensors")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise GenimageError(f"weights in {folder} do not match its config.json: {str(exc).splitlines()[0]}") from None
    return FeatureNet(module, config, sha256_file(folder / "model.safetensors"))


def load_feature_net(name: str | Path) -> FeatureNet:
    """Load a shipped feature network by name (``"digits"``, ``"shapes"``) or from a folder.

    Loaded nets are cached per folder (they are read-only: eval mode, no gradients).
    """
    return _load(_resolve(name))


from genimage.metrics.inception import load_inception  # noqa: E402,F401  (the Inception option, re-exported)
