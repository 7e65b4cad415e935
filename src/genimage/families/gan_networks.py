"""Networks of the ``gan`` family: a compact StyleGAN2 generator and a residual discriminator.

Generator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
Sec. 2 and Fig. 2d/7): a mapping MLP ``z -> w`` (class-conditional through a label embedding
concatenated to ``z``), a learned constant 4x4 input, modulated 3x3 convolutions with weight
demodulation (Eq. 1-3), per-layer noise with a learned strength, and toRGB skip outputs that are
upsampled and summed across resolutions ("output skips").

Discriminator (same paper, Fig. 7 "residual D"): fromRGB, residual blocks that halve the
resolution down to 4x4, the minibatch-stddev layer (Karras et al. 2018, "Progressive Growing of
GANs", Sec. 3) and a projection head for class conditioning (Miyato & Koyama 2018, "cGANs with
Projection Discriminator", Eq. 3: ``D(x, y) = psi(phi(x)) + <V y, phi(x)>``).

All weights use the equalized learning rate of Karras et al. 2018 (Sec. 4.1): parameters are
stored ~ N(0, 1) and scaled by He's constant ``1/sqrt(fan_in)`` at run time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def channels_at(res: int, channel_base: int, max_channels: int) -> int:
    """Feature maps at resolution ``res``: ``min(max_channels, channel_base // res)`` (StyleGAN2's rule)."""
    return max(1, min(max_channels, channel_base // res))


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) with gain ``sqrt(2)`` to keep unit variance (StyleGAN2's ``lrelu``)."""
    return F.leaky_relu(x, 0.2) * SQRT2


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (StyleGAN's pixel norm on ``z`` and the label embedding)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqLinear(nn.Module):
    """Fully connected layer with equalized learning rate.

    ``y = x (W * lr_mul / sqrt(in))^T + b * lr_mul`` with ``W ~ N(0, 1/lr_mul^2)``; with Adam,
    ``lr_mul`` scales the effective learning rate of this layer (0.01 in StyleGAN's mapping net).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_gain, b)


class EqConv2d(nn.Module):
    """Plain convolution with equalized learning rate (``same`` padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Modulated convolution with optional weight demodulation (StyleGAN2 Sec. 2.2).

    Eq. 1: ``w'_ijk = s_i * w_ijk`` (style ``s`` scales input channel ``i``);
    Eq. 3: ``w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps)`` so that, for inputs of unit
    standard deviation, each output channel ``j`` again has unit standard deviation (Eq. 2).

    Implemented in the equivalent non-fused form (StyleGAN2 appendix B): scale the input by ``s``,
    convolve with the shared weight, then scale each output channel by the demodulation
    coefficient; this uses an ordinary batched convolution instead of a grouped one.

    Args:
        in_channels, out_channels, kernel_size: Convolution geometry.
        w_dim: Size of ``w``; an affine layer maps ``w`` to the ``in_channels`` styles
            (bias initialised to 1 so styles start near identity).
        demodulate: Apply Eq. 3 (off for toRGB layers).
        up: Upsample the input by 2 (bilinear) before the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False) -> None:
        super().__init__()
        self.affine = EqLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, in)
        weight = self.weight * self.weight_gain
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (s_i w_ijk)^2 = sum_i s_i^2 * (sum_k w_ijk^2), for every sample and output j
            dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # (B, out)
            x = x * dcoefs[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """Modulated 3x3 conv + noise (learned per-layer strength, init 0) + bias + lrelu (StyleGAN2 Fig. 2c)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) + noise * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels without demodulation (StyleGAN2 Fig. 7 output skips)."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """``z -> w``: pixel-normalised ``z`` (and label embedding), then ``layers`` equalized FC + lrelu.

    Label ``-1`` (no label / dropped) uses an extra learned "null" embedding row, so the
    conditional generator also models the unconditional distribution.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, num_classes: int, lr_mul: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        in_dim = z_dim
        if num_classes > 0:
            self.embed = nn.Parameter(torch.randn(num_classes + 1, z_dim))
            in_dim += z_dim
        dims = [in_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(EqLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))

    def label_index(self, labels: torch.Tensor | None, n: int, device) -> torch.Tensor:
        """Row of ``embed`` / ``w_avg`` per sample (``num_classes`` for label ``-1`` or no labels)."""
        if self.num_classes == 0 or labels is None:
            return torch.full((n,), self.num_classes if self.num_classes > 0 else 0, dtype=torch.long, device=device)
        labels = labels.to(device)
        return torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.num_classes > 0:
            y = self.embed[self.label_index(labels, z.shape[0], z.device)]
            x = torch.cat([x, normalize_2nd_moment(y)], dim=1)
        for layer in self.layers:
            x = lrelu(layer(x))
        return x


class StyleGenerator(nn.Module):
    """StyleGAN2 generator: mapping network + synthesis network with output skips.

    Resolutions 4, 8, ..., ``image_size``: the 4x4 block is ``const -> StyleLayer -> ToRGB``;
    each later block is ``StyleLayer(up) -> StyleLayer -> ToRGB`` and adds its RGB to the
    bilinearly upsampled RGB of the block before. Conv layer ``i`` uses ``ws[:, i]``; a block's
    ToRGB uses the ``w`` index after its last conv (StyleGAN2's convention), so there are
    ``num_ws = num_convs + 1`` style inputs; ``ws`` indices ``< k`` are the coarse styles.

    A buffer ``w_avg`` (one row per class plus one for "no label") tracks the running mean of
    ``w`` for the truncation trick (Karras et al. 2019, "A Style-Based Generator", Sec. B).
    """

    def __init__(self, image_size: int, image_channels: int, num_classes: int, z_dim: int, w_dim: int,
                 mapping_layers: int, mapping_lr_mul: float, channel_base: int, max_channels: int) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, num_classes, mapping_lr_mul)
        res_list = [2 ** k for k in range(2, int(math.log2(image_size)) + 1)]
        c4 = channels_at(4, channel_base, max_channels)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers = nn.ModuleList([StyleLayer(c4, c4, w_dim, 4)])
        self.torgbs = nn.ModuleList([ToRGB(c4, image_channels, w_dim)])
        self.torgb_ws: list[int] = [1]
        prev = c4
        for res in res_list[1:]:
            ch = channels_at(res, channel_base, max_channels)
            self.layers.append(StyleLayer(prev, ch, w_dim, res, up=True))
            self.layers.append(StyleLayer(ch, ch, w_dim, res))
            self.torgbs.append(ToRGB(ch, image_channels, w_dim))
            self.torgb_ws.append(len(self.layers))
            prev = ch
        self.num_ws = len(self.layers) + 1
        self.register_buffer("w_avg", torch.zeros(num_classes + 1 if num_classes > 0 else 1, w_dim))

    @property
    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-layer noise shape ``(1, res, res)`` (one noise image per sample and layer)."""
        return [(1, layer.resolution, layer.resolution) for layer in self.layers]

    def map(self, z: torch.Tensor, labels: torch.Tensor | None, psi: float = 1.0) -> torch.Tensor:
        """``w`` of shape ``(B, w_dim)``, truncated towards the class's ``w_avg`` when ``psi != 1``."""
        w = self.mapping(z, labels)
        if psi != 1.0:
            avg = self.w_avg[self.mapping.label_index(labels, z.shape[0], z.device)]
            w = avg.to(w.dtype) + psi * (w - avg.to(w.dtype))
        return w

    def broadcast(self, w: torch.Tensor, w2: torch.Tensor | None = None, crossover: int | None = None) -> torch.Tensor:
        """``(B, num_ws, w_dim)``: ``w`` for layers ``< crossover`` and ``w2`` from ``crossover`` on
        (style mixing, StyleGAN Sec. 3.1); ``w`` everywhere when ``w2`` is None."""
        ws = w[:, None, :].expand(-1, self.num_ws, -1)
        if w2 is not None and crossover is not None:
            idx = torch.arange(self.num_ws, device=w.device)[None, :, None]
            ws = torch.where(idx < crossover, ws, w2[:, None, :].expand(-1, self.num_ws, -1))
        return ws

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """Images ``(B, C, H, W)`` (not clamped) from per-layer styles and noise."""
        if len(noise) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} noise tensors, got {len(noise)}")
        x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.layers[0](x, ws[:, 0], noise[0])
        img = self.torgbs[0](x, ws[:, self.torgb_ws[0]])
        for b in range(1, len(self.torgbs)):
            for i in (2 * b - 1, 2 * b):
                x = self.layers[i](x, ws[:, i], noise[i])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.torgbs[b](x, ws[:, self.torgb_ws[b]])
        return img

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None, noise: list[torch.Tensor],
                psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.broadcast(self.map(z, labels, psi)), noise)

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, labels: torch.Tensor | None, beta: float) -> None:
        """``w_avg[c] <- lerp(w_avg[c], mean of this batch's w of class c, 1 - beta)`` for the
        classes present; the "no label" row (or the only row) tracks the mean over all samples."""
        w = w.detach().float()
        last = self.w_avg.shape[0] - 1
        self.w_avg[last].lerp_(w.mean(dim=0), 1.0 - beta)
        if self.num_classes > 0 and labels is not None:
            idx = labels.to(w.device)
            valid = idx >= 0
            if valid.any():
                idx, wv = idx[valid], w[valid]
                sums = torch.zeros(self.num_classes, self.w_dim, device=w.device).index_add_(0, idx, wv)
                counts = torch.bincount(idx, minlength=self.num_classes).float()
                present = counts > 0
                means = sums[present] / counts[present, None]
                rows = self.w_avg[: self.num_classes]
                rows[present] = rows[present].lerp(means, 1.0 - beta)


class MinibatchStd(nn.Module):
    """Appends the mean over features of the per-group standard deviation as one extra channel
    (Karras et al. 2018, Sec. 3); groups of ``group_size`` samples (largest divisor of the batch)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        y = x.reshape(g, n // g, c, h, w).float()
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (n/g, c, h, w)
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (n/g,)
        y = y.reshape(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)


class DResBlock(nn.Module):
    """Residual D block (StyleGAN2 Fig. 7c): conv3x3, avgpool 2, conv3x3, plus a 1x1 skip on the
    pooled input; the sum is scaled by ``1/sqrt(2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqConv2d(in_channels, in_channels, 3)
        self.conv1 = EqConv2d(in_channels, out_channels, 3)
        self.skip = EqConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(lrelu(self.conv0(x)), 2)
        y = lrelu(self.conv1(y))
        return (self.skip(F.avg_pool2d(x, 2)) + y) / SQRT2


class Discriminator(nn.Module):
    """Residual discriminator with minibatch-stddev and projection class conditioning.

    Returns one logit per image: ``psi(phi(x)) + <V[y], phi(x)> / sqrt(dim)`` where ``phi`` is
    the penultimate feature vector; samples with label ``-1`` get only the unconditional term.
    """

    def __init__(self, image_size: int, image_channels: int, num_classes: int, channel_base: int,
                 max_channels: int, mbstd_group: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        res = image_size
        self.from_rgb = EqConv2d(image_channels, channels_at(res, channel_base, max_channels), 1)
        blocks = []
        while res > 4:
            blocks.append(DResBlock(channels_at(res, channel_base, max_channels),
                                    channels_at(res // 2, channel_base, max_channels)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels_at(4, channel_base, max_channels)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqConv2d(c4 + 1, c4, 3)
        self.fc = EqLinear(c4 * 16, c4)
        self.out = EqLinear(c4, 1)
        self.feature_dim = c4
        if num_classes > 0:
            self.embed = nn.Parameter(torch.randn(num_classes, c4))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = lrelu(self.from_rgb(x))
        h = self.blocks(h)
        h = lrelu(self.conv(self.mbstd(h)))
        h = lrelu(self.fc(h.flatten(1)))
        logit = self.out(h).squeeze(1)
        if self.num_classes > 0 and labels is not None:
            labels = labels.to(x.device)
            valid = labels >= 0
            v = self.embed[labels.clamp(min=0)] * valid[:, None].to(h.dtype)
            logit = logit + (v.to(h.dtype) * h).sum(dim=1) / math.sqrt(self.feature_dim)
        return logit
