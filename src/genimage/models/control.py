"""Spatial control of a frozen UNet: ControlNet and a lighter T2I-Adapter-style variant.

* ``controlnet`` (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion
  Models", Sec. 3.1-3.3, Fig. 3): a trainable copy of the base UNet's encoder and middle
  block (initialised from the base), fed ``z_t + Z(encoder(c_f))`` where the control image
  ``c_f`` passes through a small conv encoder down to the latent size (their ``E``, Sec. 3.3,
  here two stride-2 convs for 32 px -> 8x8 latents; its last conv is *not* zero-initialised,
  see :class:`ControlNet`); one
  zero-initialised 1x1 conv per skip connection and one after the middle block map the
  copy's features to residuals added to the frozen base's skips and middle output (Eq. 2:
  ``y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2)``). With all zero convs
  zero, the output equals the base's exactly.
* ``adapter`` (after Mou et al. 2023, "T2I-Adapter", Sec. 3.2): only a conv pyramid over the
  control image (no copy, no time or text input), whose features at each skip's resolution
  go through zero-initialised 1x1 convs into the same residuals. Cheaper; it cannot adapt
  its features to the noise level or the prompt.

A control model is its own folder (``config.json`` + ``model.safetensors``) naming its base
model and the sha256 of the base's ``model.safetensors``; :func:`load_control` refuses a
different base. :class:`ControlledNetwork` wraps the base backbone with one control image
and a scale; :func:`controlled_denoiser` makes it a denoiser every sampler, guidance and
inpainting wrapper can use unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genimage.errors import GenimageError

CONTROL_FORMAT = "genimage-control-1"
VARIANTS = ("controlnet", "adapter")


@dataclasses.dataclass
class ControlConfig:
    """Configuration of a control model (saved as its ``config.json``).

    Args:
        kinds: Control kinds it was trained on (names of
            :data:`genimage.editing.control_maps.CONTROL_KINDS`), e.g. ``["edges", "sketch"]``.
        variant: ``"controlnet"`` (default) or ``"adapter"`` (see the module docstring).
        hint_channels: Channels of the control image (1 for edges/sketch, 3 for segmentation).
        hint_size: Side in pixels of the control image (the base model's image size).
        hint_widths: Channels of the control-image encoder's stages (each stage after the
            first halves the resolution; the last stage is at the latent size).
        base_model: The base model's name (bundled) or folder, as given at training.
        base_sha256: sha256 of the base's ``model.safetensors``.
        base_backbone_config: The base UNet's config (the copy's architecture).
        scale: Default control scale at sampling.
        training: Free-form training record (data, steps, wall time, ...).
    """

    kinds: list[str]
    variant: str = "controlnet"
    hint_channels: int = 1
    hint_size: int = 32
    hint_widths: tuple[int, ...] = (16, 32, 64)
    base_model: str = ""
    base_sha256: str = ""
    base_backbone_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    scale: float = 1.0
    training: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from genimage.editing.control_maps import CONTROL_KINDS

        self.kinds = [str(k) for k in ([self.kinds] if isinstance(self.kinds, str) else self.kinds)]
        if not self.kinds:
            raise GenimageError("a control model needs at least one control kind")
        channels = {CONTROL_KINDS.get(k).channels for k in self.kinds}
        if channels != {self.hint_channels}:
            raise GenimageError(f"control kinds {self.kinds} have {sorted(channels)} channels, the model takes "
                                f"{self.hint_channels}; train kinds of one channel count together")
        if self.variant not in VARIANTS:
            raise GenimageError(f"control variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        self.hint_widths = tuple(int(w) for w in self.hint_widths)

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONTROL_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.json") -> "ControlConfig":
        data = dict(data)
        if data.pop("format", None) != CONTROL_FORMAT:
            raise GenimageError(f"{where} is not a genimage control model (format {CONTROL_FORMAT!r} expected)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise GenimageError(f"{where}: unknown control config keys {sorted(unknown)}")
        return cls(**data)


def _skip_channels(backbone: dict[str, Any]) -> list[int]:
    """Channels of the base UNet's skip connections in the order the encoder makes them."""
    chans = list(backbone["block_out_channels"])
    out = [chans[0]]
    for i, ch in enumerate(chans):
        out += [ch] * int(backbone.get("layers_per_block", 1))
        if i < len(chans) - 1:
            out.append(ch)
    return out


def _zero_conv(cin: int, cout: int, kernel: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class HintEncoder(nn.Module):
    """Control image ``(B, hint_channels, S, S)`` -> features at the latent size, one per stage.

    Stage 0 works at full resolution; each later stage starts with a stride-2 conv. Returns
    the list of stage outputs (SiLU activations), the last at ``S / 2 ** (stages - 1)``.

    Args:
        channels: Input channels. widths: Channels per stage.
    """

    def __init__(self, channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = channels
        for i, w in enumerate(widths):
            self.stages.append(nn.Sequential(
                nn.Conv2d(cin, w, 3, padding=1, stride=1 if i == 0 else 2), nn.SiLU(),
                nn.Conv2d(w, w, 3, padding=1), nn.SiLU()))
            cin = w

    def forward(self, hint: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = hint
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out


class ControlNet(nn.Module):
    """The ``controlnet`` variant: hint encoder + trainable copy of the base's encoder and middle.

    Args:
        config: A :class:`ControlConfig` (its ``base_backbone_config`` is the base UNet's).
    """

    def __init__(self, config: ControlConfig) -> None:
        super().__init__()
        from genimage.models.backbones.unet import UNet, UNetConfig
        from genimage.nn.embeddings import make_batch_invariant

        self.config = config
        bb = UNetConfig(**config.base_backbone_config)
        if bb.image_size * 2 ** (len(config.hint_widths) - 1) != config.hint_size:
            raise GenimageError(f"the control encoder's {len(config.hint_widths)} stages take {config.hint_size} px "
                                f"to {config.hint_size // 2 ** (len(config.hint_widths) - 1)}, but the latents are "
                                f"{bb.image_size}x{bb.image_size}")
        copy = UNet(bb).diffusers_model  # a NativeUNet; only its encoder half is kept
        self.conv_in = copy.conv_in
        self.time_embedding = copy.time_embedding
        self.class_embedding = copy.class_embedding
        self.down_blocks = copy.down_blocks
        self.mid_block = copy.mid_block
        self.feature_dim = copy.feature_dim
        self.text_dim = copy.text_dim
        self.hint_encoder = HintEncoder(config.hint_channels, config.hint_widths)
        # Not zero-initialised (the original's last hint conv is): the output projections being zero
        # already make the initial model the base exactly, and a live hint path gives them a
        # hint-dependent gradient from the first step (first-order instead of second-order growth).
        self.hint_out = nn.Conv2d(config.hint_widths[-1], bb.block_out_channels[0], 3, padding=1)
        self.zero_convs = nn.ModuleList(_zero_conv(c, c) for c in _skip_channels(config.base_backbone_config))
        self.mid_zero_conv = _zero_conv(bb.block_out_channels[-1], bb.block_out_channels[-1])
        make_batch_invariant(self)

    def init_from_base(self, base_state: dict[str, torch.Tensor]) -> None:
        """Copy the base network's encoder/middle weights (``diffusers_model.*`` keys of the
        base UNet's state dict) into the trainable copy (Zhang et al. 2023, Sec. 3.2)."""
        prefix = "diffusers_model."
        own = self.state_dict()
        picked = {k[len(prefix):]: v for k, v in base_state.items()
                  if k.startswith(prefix) and k[len(prefix):] in own}
        if not picked:
            raise GenimageError("the base's weights have none of the encoder tensors the ControlNet copies")
        self.load_state_dict(picked, strict=False)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels, text, text_mask,
                hint: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Args:
            x: The base's (scaled) noisy input ``(B, C, h, w)``.
            timestep: ``c_noise`` ``(B,)``.
            class_labels: ``(B,)`` class-embedding rows or ``None``.
            text: ``(B, L, D)`` text states (null token already substituted) or ``None``.
            text_mask: ``(B, L)`` or ``None``.
            hint: Control image ``(B, hint_channels, S, S)`` in ``[0, 1]``.

        Returns:
            ``(down_residuals, mid_residual)`` for the base's skips and middle output.
        """
        from genimage.models.backbones.unet_native import attention_bias, run_encoder, run_middle, time_class_embedding

        bias = attention_bias(text_mask, x.dtype)
        emb = time_class_embedding(self, x, timestep, class_labels)
        h = self.conv_in(x) + self.hint_out(self.hint_encoder(hint.to(x.dtype))[-1])
        h, skips = run_encoder(self, h, emb, text, bias)
        h = run_middle(self, h, emb, text, bias)
        return [z(s) for z, s in zip(self.zero_convs, skips, strict=True)], self.mid_zero_conv(h)


class ControlAdapter(nn.Module):
    """The ``adapter`` variant: residuals from the control image alone (no time, no text).

    The hint encoder runs down to the latent size; further stride-2 stages follow the base's
    levels, and every skip takes its resolution's feature through a zero-initialised 1x1 conv.

    Args:
        config: A :class:`ControlConfig`.
    """

    def __init__(self, config: ControlConfig) -> None:
        super().__init__()
        self.config = config
        bb = config.base_backbone_config
        chans = list(bb["block_out_channels"])
        self.hint_encoder = HintEncoder(config.hint_channels, config.hint_widths)
        self.levels = nn.ModuleList()
        cin = config.hint_widths[-1]
        for i, ch in enumerate(chans):
            self.levels.append(nn.Sequential(
                nn.Conv2d(cin, ch, 3, padding=1, stride=1 if i == 0 else 2), nn.SiLU(),
                nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU()))
            cin = ch
        # skip k lives at level: conv_in and level-0 resnets at 0, the downsample of level i at i + 1
        self.skip_level = []
        lpb = int(bb.get("layers_per_block", 1))
        self.skip_level.append(0)
        for i in range(len(chans)):
            self.skip_level += [i] * lpb
            if i < len(chans) - 1:
                self.skip_level.append(i + 1)
        skip_ch = _skip_channels(bb)
        self.zero_convs = nn.ModuleList(_zero_conv(chans[lv], c) for lv, c in zip(self.skip_level, skip_ch))
        self.mid_zero_conv = _zero_conv(chans[-1], chans[-1])

    def init_from_base(self, base_state: dict[str, torch.Tensor]) -> None:
        """Nothing to copy (the adapter has no copy of the base)."""

    def forward(self, x, timestep, class_labels, text, text_mask, hint):
        """Same signature and result as :meth:`ControlNet.forward` (only ``hint`` is read)."""
        h = self.hint_encoder(hint.to(x.dtype))[-1]
        feats = []
        for level in self.levels:
            h = level(h)
            feats.append(h)
        down = [z(feats[lv]) for z, lv in zip(self.zero_convs, self.skip_level)]
        return down, self.mid_zero_conv(feats[-1])


def build_control(config: ControlConfig) -> nn.Module:
    """A freshly initialised control module of ``config.variant``."""
    return ControlNet(config) if config.variant == "controlnet" else ControlAdapter(config)


class ControlledNetwork(nn.Module):
    """The base backbone with a control module, one control image and a scale.

    ``forward(x, c_noise, cond)`` is the backbone contract; the control residuals (times
    ``scale``) are added to the base's skips and middle. A batch that is a multiple of the
    control images' (classifier-free guidance's doubled batch, a one-image batch run twice)
    repeats them, so the conditional and unconditional branches see the same control
    (as in ControlNet's sampling). ``scale == 0`` skips the control module: the base exactly.

    Args:
        base: The base :class:`~genimage.models.backbones.unet.UNet`.
        control: A :class:`ControlNet` or :class:`ControlAdapter`.
        hint: Control images ``(1 or N, hint_channels, S, S)`` in ``[0, 1]``.
        scale: Multiplies every residual (0 = off, 1 = as trained).
    """

    def __init__(self, base: nn.Module, control: nn.Module, hint: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.base = base
        self.control = control
        self.hint = hint
        self.scale = float(scale)
        self.config = base.config

    def _residuals(self, x, c_noise, idx, text, mask) -> dict[str, Any]:
        hint = self.hint.to(x.device)
        if x.shape[0] != hint.shape[0]:
            if x.shape[0] % hint.shape[0]:
                raise GenimageError(f"{hint.shape[0]} control images for a batch of {x.shape[0]}")
            hint = hint.repeat(x.shape[0] // hint.shape[0], 1, 1, 1)
        down, mid = self.control(x, c_noise, idx, text, mask, hint)
        if self.scale != 1.0:
            down, mid = [d * self.scale for d in down], mid * self.scale
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        if self.scale == 0.0:
            return self.base(x, c_noise, cond)
        return self.base(x, c_noise, cond, control=self._residuals)


def controlled_denoiser(denoiser, control: nn.Module, hint: torch.Tensor, scale: float = 1.0):
    """A :class:`~genimage.models.denoiser.Denoiser` over ``denoiser``'s path and prediction
    whose network is the base with control (:class:`ControlledNetwork`)."""
    from genimage.models.backbones.unet import UNet
    from genimage.models.denoiser import Denoiser

    if not isinstance(denoiser.network, UNet):
        raise GenimageError("spatial control needs a UNet base model (genimage's UNet backbone)")
    net = ControlledNetwork(denoiser.network, control, hint, scale)
    return Denoiser(net, denoiser.path, denoiser.prediction, denoiser.sigma_data)


# ------------------------------------------------------------------ folders
@dataclasses.dataclass
class LoadedControl:
    """A control model ready to use.

    Attributes:
        module: The :class:`ControlNet` / :class:`ControlAdapter`, eval mode, frozen.
        config: Its :class:`ControlConfig`.
        folder: The folder it was loaded from.
        sha256: sha256 of its ``model.safetensors``.
        ref: The name to record (the bundled name or the folder path).
    """

    module: nn.Module
    config: ControlConfig
    folder: Path
    sha256: str
    ref: str


def save_control(folder: str | Path, config: ControlConfig, state: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of a control model (each atomically)."""
    from genimage.utils.weights import save_safetensors, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: v.detach().float().contiguous() for k, v in state.items()}, folder / "model.safetensors")
    write_json_atomic(config.to_dict(), folder / "config.json", what="control config")
    return folder


def bundled_control_dir() -> Path:
    """Where bundled control models live: ``genimage/weights/control/NAME``."""
    from genimage.models.io import BUNDLED_DIR

    return BUNDLED_DIR / "control"


def resolve_control_folder(name_or_path: str | Path) -> Path:
    """A control model folder from a bundled name (under ``genimage/weights/control``) or a path."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        return p
    if p.is_dir() and (p / "model" / "config.json").is_file():  # a control training run folder
        return p / "model"
    bundled = bundled_control_dir() / str(name_or_path)
    if "/" not in str(name_or_path) and (bundled / "config.json").is_file():
        return bundled
    names = sorted(q.parent.name for q in bundled_control_dir().glob("*/config.json"))
    raise GenimageError(f"control model {str(name_or_path)!r} not found: give a control model folder or a "
                        f"bundled name ({', '.join(names) or 'none installed'})")


def load_control(name_or_path: str | Path, base_sha256: str | None = None) -> LoadedControl:
    """Load a control model folder; with ``base_sha256``, refuse one trained for another base.

    Raises:
        GenimageError: Not a control folder, weights not matching the config, or a base
            whose sha256 differs from the one the control model names.
    """
    from genimage.utils.weights import load_safetensors, sha256_file

    folder = resolve_control_folder(name_or_path)
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise GenimageError(f"{folder / 'config.json'} is unreadable: {exc}") from None
    config = ControlConfig.from_dict(data, str(folder / "config.json"))
    if base_sha256 is not None and config.base_sha256 != base_sha256:
        raise GenimageError(f"control model {folder.name} was trained for base {config.base_model!r} "
                            f"(sha256 {config.base_sha256[:12]}...), but this base's weights have sha256 "
                            f"{base_sha256[:12]}...; use the base it names or train a control model for this one")
    module = build_control(config)
    state = load_safetensors(folder / "model.safetensors")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GenimageError(f"{folder / 'model.safetensors'} does not match its config.json "
                            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    module.eval().requires_grad_(False)
    resolved = folder.resolve()
    ref = resolved.name if resolved.parent == bundled_control_dir().resolve() else str(resolved)
    return LoadedControl(module, config, folder, sha256_file(folder / "model.safetensors"), ref)


def check_hint(hint: torch.Tensor, config: ControlConfig) -> torch.Tensor:
    """``hint`` ``(C, S, S)`` or ``(N, C, S, S)`` as a float ``(N, C, S, S)`` in [0, 1] that
    fits ``config``, else a one-line :class:`GenimageError`."""
    if hint.ndim == 3:
        hint = hint[None]
    want = (config.hint_channels, config.hint_size, config.hint_size)
    if hint.ndim != 4 or tuple(hint.shape[1:]) != want:
        raise GenimageError(f"the control image must be {want[1]}x{want[2]} with {want[0]} channel(s), "
                            f"got shape {tuple(hint.shape)}")
    return hint.float()


def hint_downsample(hint: torch.Tensor, size: int) -> torch.Tensor:
    """Box-average ``(N, C, H, W)`` control images to ``size`` (``H`` a multiple of ``size``)."""
    return F.avg_pool2d(hint, hint.shape[-1] // size) if hint.shape[-1] != size else hint
