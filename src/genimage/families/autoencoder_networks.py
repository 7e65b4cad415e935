"""The convolutional encoder/decoder shared by the ``vae`` and ``autoencoder`` families.

The architecture follows the first-stage autoencoder of latent diffusion (Rombach et al.
2022, "High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3 and App. G),
itself the VQGAN encoder/decoder (Esser et al. 2021) without attention: a stack of ResNet
blocks (He et al. 2016) with GroupNorm (Wu & He 2018) and SiLU, a stride-2 convolution per
downsampling level and nearest-neighbour upsampling + convolution per upsampling level.
To stay cheap on a CPU, the resampling convolutions also change the channel count (the
decoder narrows *before* working at the higher resolution), so every ResNet block keeps its
level's width.

* ``downsample`` (1, 2, 4 or 8) sets the spatial reduction; ``channel_mult`` has one entry
  per resolution level (``log2(downsample) + 1`` entries).
* The encoder outputs the mean and log-variance of a diagonal Gaussian posterior, either
  *spatial* (``latent_channels x H/f x W/f``, the LDM latent) or *flat* (a
  ``latent_dim`` vector from a linear layer on the flattened feature map, the classic VAE
  latent of Kingma & Welling 2014).
* With ``num_classes > 0`` a label embedding (index ``num_classes`` = "no label") is added,
  projected per block, to the activations of every ResNet block of both networks, as the
  timestep embedding is in DDPM (Ho et al. 2020, App. B).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError

DOWNSAMPLE_FACTORS = (1, 2, 4, 8)
LATENT_KINDS = ("spatial", "flat")


@dataclass
class ConvAEConfig:
    """Architecture settings (the keys of ``ModelConfig.backbone_config``).

    Args:
        image_size: Side of the (square) images.
        channels: Image channels (1 or 3).
        num_classes: Number of class labels (0 = unconditional).
        base_channels: Channels of the first resolution level.
        channel_mult: Channel multiplier per level; ``len == log2(downsample) + 1``
            (``None``: ``[1, 2, 2, 4][:levels]``).
        num_res_blocks: ResNet blocks per level (the decoder uses the same number).
        groups: GroupNorm groups (must divide every channel count).
        downsample: Spatial downsampling factor ``f`` of the latent, 1, 2, 4 or 8.
        latent: ``"spatial"`` (``latent_channels x H/f x W/f``) or ``"flat"`` (``latent_dim``).
        latent_channels: Channels of a spatial latent.
        latent_dim: Size of a flat latent.
        cond_dim: Width of the label embedding (class-conditional models only).
        out_channels_mult: Decoder output channels per image channel (2 when the decoder also
            predicts a per-pixel scale).
    """

    image_size: int = 8
    channels: int = 1
    num_classes: int = 0
    base_channels: int = 32
    channel_mult: list[int] | None = None
    num_res_blocks: int = 1
    groups: int = 8
    downsample: int = 2
    latent: str = "spatial"
    latent_channels: int = 4
    latent_dim: int = 16
    cond_dim: int = 64
    out_channels_mult: int = 1
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def levels(self) -> int:
        return int(math.log2(self.downsample)) + 1

    @property
    def mults(self) -> list[int]:
        return list(self.channel_mult) if self.channel_mult is not None else [1, 2, 2, 4][: self.levels]

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.latent == "flat":
            return (self.latent_dim,)
        return (self.latent_channels, self.latent_size, self.latent_size)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], allowed_extra: set[str] = frozenset()) -> "ConvAEConfig":
        """Build from a config dict; keys in ``allowed_extra`` (family settings) go to
        :attr:`extra`; any other unknown key is a :class:`GenimageError`."""
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = sorted(set(cfg) - known - set(allowed_extra))
        if unknown:
            raise GenimageError(
                f"unknown autoencoder setting(s) {unknown}; valid: {sorted(known | set(allowed_extra))}")
        out = cls(**{k: v for k, v in cfg.items() if k in known},
                  extra={k: v for k, v in cfg.items() if k in allowed_extra})
        out.validate()
        return out

    def validate(self) -> None:
        if self.downsample not in DOWNSAMPLE_FACTORS:
            raise GenimageError(f"downsample must be one of {DOWNSAMPLE_FACTORS}, got {self.downsample}")
        if self.image_size % self.downsample:
            raise GenimageError(
                f"image_size {self.image_size} is not divisible by downsample {self.downsample}; "
                "choose a smaller downsample or another image size")
        if self.latent not in LATENT_KINDS:
            raise GenimageError(f"latent must be one of {LATENT_KINDS}, got {self.latent!r}")
        if len(self.mults) != self.levels:
            raise GenimageError(
                f"channel_mult needs log2(downsample) + 1 = {self.levels} entries for downsample "
                f"{self.downsample}, got {self.mults}")
        for name in ("base_channels", "num_res_blocks", "groups", "latent_channels", "latent_dim", "channels"):
            if int(getattr(self, name)) < 1:
                raise GenimageError(f"{name} must be at least 1, got {getattr(self, name)}")
        for m in self.mults:
            if (self.base_channels * m) % self.groups:
                raise GenimageError(
                    f"groups={self.groups} must divide every level's channels "
                    f"({[self.base_channels * m for m in self.mults]})")
        if self.num_classes < 0:
            raise GenimageError(f"num_classes must be >= 0, got {self.num_classes}")


class LabelEmbedding(nn.Module):
    """Embeds labels ``(B,)`` (``-1`` = no label) into ``(B, cond_dim)``."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        idx = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.mlp(self.table(idx))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 (+ label bias) -> GroupNorm -> SiLU -> conv3x3, plus a
    (1x1-projected) skip. The second convolution starts at zero, so each block starts as the
    identity (Goyal et al. 2017's zero-init residual, as in DDPM / LDM)."""

    def __init__(self, cin: int, cout: int, groups: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.cond = nn.Linear(cond_dim, cout) if cond_dim else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.cond is not None and emb is not None:
            h = h + self.cond(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (halves H and W; ``cin -> cout`` channels)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution ``cin -> cout`` (avoids transposed-conv
    checkerboards)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stack(nn.Module):
    """A sequence of ResBlock / Downsample / Upsample layers that threads the label embedding."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Encoder(nn.Module):
    """Image ``(B, C, H, W)`` -> posterior ``(mean, logvar)``, each of shape ``(B, *latent_shape)``."""

    def __init__(self, cfg: ConvAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chs = [cfg.base_channels * m for m in cfg.mults]
        cdim = cfg.cond_dim if cfg.num_classes > 0 else 0
        self.label = LabelEmbedding(cfg.num_classes, cfg.cond_dim) if cdim else None
        self.conv_in = nn.Conv2d(cfg.channels, chs[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, ch in enumerate(chs):
            layers += [ResBlock(ch, ch, cfg.groups, cdim) for _ in range(cfg.num_res_blocks)]
            if i < len(chs) - 1:
                layers.append(Downsample(ch, chs[i + 1]))
        ch = chs[-1]
        layers.append(ResBlock(ch, ch, cfg.groups, cdim))  # middle block
        self.body = _Stack(layers)
        self.norm_out = nn.GroupNorm(cfg.groups, ch)
        if cfg.latent == "flat":
            self.out = nn.Linear(ch * cfg.latent_size ** 2, 2 * cfg.latent_dim)
        else:
            self.out = nn.Conv2d(ch, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.label(labels) if self.label is not None and labels is not None else None
        if self.label is not None and emb is None:
            emb = self.label(torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device))
        h = F.silu(self.norm_out(self.body(self.conv_in(x), emb)))
        if self.cfg.latent == "flat":
            h = self.out(h.flatten(1))
        else:
            h = self.out(h)
        mean, logvar = h.chunk(2, dim=1)
        # clamp as LDM's DiagonalGaussianDistribution does, so exp(logvar) stays finite
        return mean, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """Latent ``(B, *latent_shape)`` -> ``(B, channels * out_channels_mult, H, W)`` (raw output)."""

    def __init__(self, cfg: ConvAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chs = [cfg.base_channels * m for m in cfg.mults]
        cdim = cfg.cond_dim if cfg.num_classes > 0 else 0
        self.label = LabelEmbedding(cfg.num_classes, cfg.cond_dim) if cdim else None
        top = chs[-1]
        if cfg.latent == "flat":
            self.inp = nn.Linear(cfg.latent_dim, top * cfg.latent_size ** 2)
        else:
            self.inp = nn.Conv2d(cfg.latent_channels, top, 3, padding=1)
        layers: list[nn.Module] = [ResBlock(top, top, cfg.groups, cdim)]  # middle block
        for i in reversed(range(len(chs))):
            layers += [ResBlock(chs[i], chs[i], cfg.groups, cdim) for _ in range(cfg.num_res_blocks)]
            if i > 0:
                layers.append(Upsample(chs[i], chs[i - 1]))
        ch = chs[0]
        self.body = _Stack(layers)
        self.norm_out = nn.GroupNorm(cfg.groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.channels * cfg.out_channels_mult, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the output convolution (for the adaptive GAN weight of Esser et al. 2021)."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = None
        if self.label is not None:
            if labels is None:
                labels = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
            emb = self.label(labels)
        if self.cfg.latent == "flat":
            s = self.cfg.latent_size
            h = self.inp(z).reshape(z.shape[0], -1, s, s)
        else:
            h = self.inp(z)
        h = self.body(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class PatchDiscriminator(nn.Module):
    """A small PatchGAN discriminator (Isola et al. 2017, "Image-to-Image Translation with
    Conditional Adversarial Networks", Sec. 3.2.2): strided 4x4 convolutions with GroupNorm
    and LeakyReLU(0.2) that output one real/fake logit per overlapping patch.

    Args:
        channels: Image channels.
        width: Channels of the first layer (doubled per layer).
        layers: Number of stride-2 layers (each halves the patch-logit map).
    """

    def __init__(self, channels: int, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(layers - 1):
            mods += [nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), nn.GroupNorm(min(8, ch * 2), ch * 2),
                     nn.LeakyReLU(0.2)]
            ch *= 2
        mods.append(nn.Conv2d(ch, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
