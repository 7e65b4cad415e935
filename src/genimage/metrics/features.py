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
``config.json``, ``README.md``) and are trained by ``scripts/train_feature_nets.py``. The
``generic`` net is trained self-supervised (SimCLR) on photo crops plus the built-in sets and is
the default for folders no domain network fits.

Domain check: a net may carry ``domain.safetensors``, a Gaussian fitted to its features of its
own training data (mean and precision matrix), the 99th percentile of the Mahalanobis distance
on held-out data of that domain (Lee et al., 2018, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", Eq. 2, with one Gaussian) and the 0.5th
and 99.5th percentiles of the feature norm there (a classifier trained with outlier exposure
maps junk to near-zero features, which the Mahalanobis distance alone misses), plus one pixel
statistic, the 99.5th percentile of the high-frequency share (:func:`high_frequency_share`:
about 1 for white noise, far below for photos and drawings; a small self-supervised net can map
noise next to grainy photo crops, so its features alone do not separate them). An image beyond
any limit looks unlike anything the net was trained on (:meth:`FeatureNet.domain_check`), so
scores in its features are not meaningful for it; the evaluation report warns when many are.
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
DOMAIN_FILE = "domain.safetensors"
"""Optional file beside ``model.safetensors``: ``mean (D,)``, ``precision (D, D)``, ``threshold ()``,
``norm_range (2,)``, ``hf_max ()``."""
DOMAIN_KEYS = {"mean", "precision", "threshold", "norm_range", "hf_max"}
OUT_OF_DOMAIN_WARN = 0.25
"""Warn when more than this share of images lies outside the domain (about 2% of in-domain images do)."""


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

    def __init__(self, module: SmallCNN, config: FeatureNetConfig, weights_sha256: str = "",
                 domain: dict[str, torch.Tensor] | None = None) -> None:
        self.module = module.eval()
        self.domain = domain
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
        """Check channels and resize to the net's input size (area when shrinking); a 3-channel
        net takes 1-channel images as gray (the channel repeated)."""
        if (self.config.in_channels == 3 and isinstance(images, torch.Tensor) and images.ndim == 4
                and images.shape[1] == 1):
            images = images.repeat(1, 3, 1, 1)
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


    def domain_distances(self, images: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> torch.Tensor:
        """Mahalanobis distance ``(N,)`` of each image's features to the net's training domain.

        Args:
            images: ``(N, C, H, W)`` in ``[-1, 1]`` (or give ``features``).
            features: ``(N, D)`` features already computed by :meth:`features`.

        Raises:
            GenimageError: If the net has no ``domain.safetensors``.
        """
        if self.domain is None:
            raise GenimageError(f"feature net {self.name!r} has no domain statistics ({DOMAIN_FILE}); "
                                "make them with scripts/train_feature_nets.py --calibrate NAME")
        f = self.features(images) if features is None else features.to(torch.float32)
        d = f - self.domain["mean"]
        return ((d @ self.domain["precision"]) * d).sum(1).clamp_min(0).sqrt()

    def domain_check(self, images: torch.Tensor | None = None, *, features: torch.Tensor | None = None,
                     what: str = "images") -> dict[str, Any] | None:
        """How many images lie outside the net's domain, with a warning when too many do.

        Returns ``None`` for a net without domain statistics, else ``{"outside": share beyond the
        Mahalanobis threshold, outside the norm range or (given ``images``) above ``hf_max``,
        "median_distance", "median_norm", "threshold", "norm_range", "hf_max", "noisy",
        "warning": str or None}``. About 2-3% of images of the net's own domain are outside; a
        warning is given above :data:`OUT_OF_DOMAIN_WARN`.

        Args:
            images: ``(N, C, H, W)`` in ``[-1, 1]`` (or give ``features``).
            features: ``(N, D)`` features already computed by :meth:`features`.
            what: What the images are, for the warning (``"samples"``, ``"reference data"``).
        """
        if self.domain is None:
            return None
        f = self.features(images) if features is None else features.to(torch.float32)
        dist = self.domain_distances(features=f)
        norm = f.norm(dim=1)
        thr, hf_max = float(self.domain["threshold"]), float(self.domain["hf_max"])
        lo, hi = (float(v) for v in self.domain["norm_range"])
        far, odd_norm = dist > thr, (norm < lo) | (norm > hi)
        noisy = torch.zeros_like(far)
        if images is not None:  # the pixel statistic needs the images
            noisy = torch.cat([high_frequency_share(self.prepare(images[i:i + 500]))
                               for i in range(0, images.shape[0], 500)]) > hf_max
        out = far | odd_norm | noisy
        outside = float(out.float().mean())
        warning = None
        if outside > OUT_OF_DOMAIN_WARN:
            warning = (f"{outside:.0%} of the {what} lie outside the domain of the {self.name!r} features "
                       f"({float(far.float().mean()):.0%} beyond its Mahalanobis threshold {thr:.1f}, "
                       f"{float(odd_norm.float().mean()):.0%} with a feature norm outside [{lo:.2f}, {hi:.2f}], "
                       f"{float(noisy.float().mean()):.0%} noisier than {hf_max:.2f} high-frequency share; "
                       f"limits from its own held-out data): scores in these features may not mean much; "
                       f"pass --features for a net of this domain (scripts/train_feature_nets.py trains one)")
        return {"outside": round(outside, 4), "median_distance": round(float(dist.median()), 3),
                "median_norm": round(float(norm.median()), 3), "threshold": round(thr, 3),
                "norm_range": [round(lo, 3), round(hi, 3)], "hf_max": round(hf_max, 4),
                "noisy": round(float(noisy.float().mean()), 4), "warning": warning}


def high_frequency_share(images: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``: mean squared difference of neighbouring pixels over ``4 x`` the pixel
    variance (averaged over channels). White noise gives about 1 (each difference has twice
    the variance), smooth images near 0; a flat image gives 0.

    Args:
        images: ``(N, C, H, W)``.
    """
    dx = (images[..., :, 1:] - images[..., :, :-1]).square().mean((2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).square().mean((2, 3))
    var = images.var(dim=(2, 3))
    return ((dx + dy) / (4 * var + 1e-4)).mean(1)


def fit_domain(features: torch.Tensor, held_out: torch.Tensor, quantile: float = 0.99,
               shrinkage: float = 0.05, held_out_hf: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Domain statistics for :meth:`FeatureNet.domain_check`: a Gaussian on ``features``.

    Args:
        features: ``(N, D)`` features of the net's training data (the Gaussian's sample).
        held_out: ``(M, D)`` features of held-out data of the same domain (the threshold's).
        quantile: Share of ``held_out`` inside the threshold (default 0.99).
        shrinkage: Covariance shrinkage toward ``mean(diag) * I`` (Ledoit-Wolf style, fixed weight).
        held_out_hf: :func:`high_frequency_share` of the held-out images (``None``: no pixel limit).

    Returns:
        ``{"mean": (D,), "precision": (D, D), "threshold": (), "norm_range": (2,), "hf_max": ()}``
        float32: ``threshold`` is the ``quantile`` of the held-out Mahalanobis distances,
        ``norm_range`` the ``(1 - quantile) / 2`` and ``(1 + quantile) / 2`` quantiles of their
        feature norms, ``hf_max`` the ``(1 + quantile) / 2`` quantile of ``held_out_hf`` (inf
        without it).
    """
    f = features.double()
    mean = f.mean(0)
    cov = torch.cov((f - mean).T)
    cov = (1 - shrinkage) * cov + shrinkage * cov.diagonal().mean().clamp_min(1e-8) * torch.eye(f.shape[1], dtype=f.dtype)
    precision = torch.linalg.inv(cov)
    d = held_out.double() - mean
    dist = ((d @ precision) * d).sum(1).clamp_min(0).sqrt()
    norms = held_out.double().norm(dim=1)
    tail = (1 - quantile) / 2
    return {"mean": mean.float(), "precision": precision.float(),
            "threshold": torch.quantile(dist, quantile).float().reshape(()),
            "norm_range": torch.stack([torch.quantile(norms, tail), torch.quantile(norms, 1 - tail)]).float(),
            "hf_max": (torch.quantile(held_out_hf.double(), 1 - tail) if held_out_hf is not None
                       else torch.tensor(float("inf"))).float().reshape(())}


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
    domain = load_safetensors(folder / DOMAIN_FILE) if (folder / DOMAIN_FILE).is_file() else None
    if domain is not None and set(domain) != DOMAIN_KEYS:
        raise GenimageError(f"{folder / DOMAIN_FILE} must hold {', '.join(sorted(DOMAIN_KEYS))}, has {sorted(domain)}; "
                            "rewrite it with scripts/train_feature_nets.py --calibrate NAME")
    return FeatureNet(module, config, sha256_file(folder / "model.safetensors"), domain)


def load_feature_net(name: str | Path) -> FeatureNet:
    """Load a shipped feature network by name (``"digits"``, ``"shapes"``, ``"generic"``) or from a folder.

    Loaded nets are cached per folder (they are read-only: eval mode, no gradients).
    """
    return _load(_resolve(name))


from genimage.metrics.inception import load_inception  # noqa: E402,F401  (the Inception option, re-exported)
