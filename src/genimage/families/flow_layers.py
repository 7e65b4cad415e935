"""Invertible layers of the normalizing-flow family (RealNVP / Glow).

Every layer maps ``x`` to ``y`` with a tractable Jacobian and has

* ``forward(x, cond) -> (y, logdet)``: ``logdet`` is ``log|det dy/dx|`` per sample, shape ``(B,)``;
* ``inverse(y, cond) -> x``: the exact inverse.

``cond`` is ``None`` or a ``(B, E)`` conditioning vector (a class embedding); layers that do
not use it ignore it. The layers are those of

* Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP" (ICLR):
  logit pre-processing (Sec. 4.1), affine coupling with checkerboard and channel masks
  (Sec. 3.3-3.4, Eq. 7-9), squeeze (Sec. 3.6) and multi-scale factor-out (Sec. 3.6, Eq. 16);
* Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions"
  (NeurIPS): ActNorm with data-dependent initialisation (Sec. 3.1), LU-decomposed invertible
  1x1 convolution (Sec. 3.2, Eq. 10), zero-initialised last coupling layer (Sec. 3.3) and the
  learned (conditional) prior of factored-out variables (their code's ``split2d`` prior).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError


def _sum_per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


class LogitTransform(nn.Module):
    """Maps dequantised ``[-1, 1]`` pixels to logit space (RealNVP Sec. 4.1).

    Pixels ``v`` in ``0..bins-1`` are stored as ``x = v / ((bins - 1) / 2) - 1``; centred uniform
    dequantisation spreads each value over ``[x - 1/(bins-1), x + 1/(bins-1))``, so the
    dequantised variable lives in ``[-1 - 1/(bins-1), 1 + 1/(bins-1)]``. It is mapped to
    ``q = (x + 1 + 1/(bins-1)) * (bins - 1) / (2 bins)`` in ``[0, 1]``, then to
    ``y = logit(alpha + (1 - 2 alpha) q)``, with

    ``log|dy/dx| = log((bins - 1) / (2 bins)) + log(1 - 2 alpha) - log s - log(1 - s)``,
    ``s = alpha + (1 - 2 alpha) q``,

    summed over dimensions. So the flow density is a density over the ``[-1, 1]``-scaled
    variable, as :meth:`~genimage.families.base.GenerativeModel.bits_per_dim` expects.

    Args:
        alpha: Squashing margin that keeps the logit finite at the ends (RealNVP uses 0.05).
        bins: Number of pixel values (256 for 8-bit images).
    """

    def __init__(self, alpha: float = 0.05, bins: int = 256) -> None:
        super().__init__()
        if not 0 < alpha < 0.5:
            raise GenimageError(f"logit alpha must be in (0, 0.5), got {alpha}")
        self.alpha, self.bins = float(alpha), int(bins)
        self.half = 1.0 / (self.bins - 1)  # half a pixel step in the [-1, 1] scale
        self.to_unit = (self.bins - 1) / (2.0 * self.bins)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        q = (x + 1 + self.half) * self.to_unit
        s = self.alpha + (1 - 2 * self.alpha) * q
        y = torch.log(s) - torch.log1p(-s)
        logdet = (math.log(self.to_unit) + math.log(1 - 2 * self.alpha)
                  - torch.log(s) - torch.log1p(-s))
        return y, _sum_per_sample(logdet)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        q = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)
        return q / self.to_unit - 1 - self.half


class Identity(nn.Module):
    """The identity transform (pre-processing ``"none"``: the flow works in ``[-1, 1]`` directly)."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return y


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + loc) * exp(log_scale)`` (Glow Sec. 3.1, Table 1).

    ``logdet = H * W * sum(log_scale)``. Data-dependent initialisation: when
    :attr:`init_next` is set, the next :meth:`forward` sets ``loc`` and ``log_scale`` so that
    the batch's output has zero mean and unit variance per channel, and marks the layer
    initialised in the ``initialized`` buffer (saved with the weights, so a loaded model is not
    re-initialised).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))
        self.init_next = False

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set the parameters from a batch ``x`` (Glow's data-dependent init)."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.init_next:
            self.initialize(x)
            self.init_next = False
        y = (x + self.loc) * torch.exp(self.log_scale)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with an LU-decomposed weight (Glow Sec. 3.2, Eq. 10).

    ``W = P L (U + diag(sign * exp(log_s)))`` with a fixed permutation ``P``, unit lower
    triangular ``L`` and strictly upper triangular ``U``; ``logdet = H * W * sum(log_s)``.
    Initialised from a random rotation (``|det W| = 1``).

    Args:
        channels: Number of channels.
        generator: Random generator for the initial rotation (default: torch's global one).
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def weight(self) -> torch.Tensor:
        """The ``(C, C)`` weight matrix."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.conv2d(x, self.weight()[:, :, None, None])
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return F.conv2d(y, w_inv[:, :, None, None])


def checkerboard(h: int, w: int, parity: int, like: torch.Tensor) -> torch.Tensor:
    """``(1, 1, h, w)`` mask that is 1 where ``(i + j) % 2 == parity`` (RealNVP Fig. 3, left)."""
    i = torch.arange(h, device=like.device)[:, None]
    j = torch.arange(w, device=like.device)[None, :]
    return ((i + j) % 2 == parity).to(like.dtype)[None, None]


class CouplingNet(nn.Module):
    """The small conv net of an affine coupling: 3x3 conv, act, 1x1 conv, act, 3x3 conv.

    The conditioning vector is projected and added after the first conv. The last conv is
    zero-initialised (Glow Sec. 3.3) so the coupling starts as the identity.
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.conv_mid = nn.Conv2d(hidden, hidden, 1)
        self.conv_out = nn.Conv2d(hidden, c_out, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.cond_proj = nn.Linear(cond_dim, hidden) if cond_dim > 0 else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.conv_in(x)
        if self.cond_proj is not None and cond is not None:
            h = h + self.cond_proj(cond)[:, :, None, None]
        h = F.silu(self.conv_mid(F.silu(h)))
        return self.conv_out(F.silu(h))


class AffineCoupling(nn.Module):
    """Affine coupling ``y_b = x_b * exp(log_s(x_a)) + t(x_a)``, ``y_a = x_a`` (RealNVP Eq. 7-9).

    ``log_s = clamp * tanh(raw / clamp)`` (a soft clamp that is the identity near 0 and keeps
    scales in ``[exp(-clamp), exp(clamp)]``); ``logdet = sum(log_s)`` over the transformed part.

    Args:
        channels: Channels of ``x``.
        hidden: Width of the coupling net.
        cond_dim: Size of the conditioning vector (0 = none).
        mask: ``"channel"`` (``x_a`` = one half of the channels) or ``"checkerboard"``
            (``x_a`` = pixels with ``(i + j) % 2 == parity``, all channels).
        parity: Which half is ``x_a`` (0: first half / even squares).
        clamp: Bound of ``|log_s|``.
    """

    def __init__(self, channels: int, hidden: int, cond_dim: int = 0, mask: str = "channel",
                 parity: int = 0, clamp: float = 2.0) -> None:
        super().__init__()
        if mask not in ("channel", "checkerboard"):
            raise GenimageError(f"coupling mask must be 'channel' or 'checkerboard', got {mask!r}")
        if mask == "channel" and channels < 2:
            raise GenimageError("a channel-mask coupling needs at least 2 channels; squeeze first")
        self.mask, self.parity, self.clamp = mask, int(parity) % 2, float(clamp)
        if mask == "channel":
            self.c_a = channels // 2 if self.parity == 0 else channels - channels // 2
            self.net = CouplingNet(self.c_a, 2 * (channels - self.c_a), hidden, cond_dim)
        else:
            self.net = CouplingNet(channels + 1, 2 * channels, hidden, cond_dim)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.parity == 0:
            return x[:, :self.c_a], x[:, self.c_a:]
        return x[:, x.shape[1] - self.c_a:], x[:, :x.shape[1] - self.c_a]

    def _join(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b] if self.parity == 0 else [b, a], 1)

    def _params(self, x_a: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(x_a, cond).chunk(2, dim=1)
        return shift, self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mask == "channel":
            x_a, x_b = self._split(x)
            shift, log_s = self._params(x_a, cond)
            return self._join(x_a, x_b * torch.exp(log_s) + shift), _sum_per_sample(log_s)
        m = checkerboard(x.shape[2], x.shape[3], self.parity, x)
        x_a = x * m
        shift, log_s = self._params(torch.cat([x_a, m.expand(x.shape[0], 1, -1, -1)], 1), cond)
        log_s, shift = log_s * (1 - m), shift * (1 - m)
        return x_a + (1 - m) * (x * torch.exp(log_s) + shift), _sum_per_sample(log_s)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.mask == "channel":
            y_a, y_b = self._split(y)
            shift, log_s = self._params(y_a, cond)
            return self._join(y_a, (y_b - shift) * torch.exp(-log_s))
        m = checkerboard(y.shape[2], y.shape[3], self.parity, y)
        y_a = y * m
        shift, log_s = self._params(torch.cat([y_a, m.expand(y.shape[0], 1, -1, -1)], 1), cond)
        return y_a + (1 - m) * (y - shift) * torch.exp(-log_s)


class Squeeze(nn.Module):
    """Space-to-depth ``(C, H, W) -> (4C, H/2, W/2)`` (RealNVP Sec. 3.6); volume preserving."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise GenimageError(f"cannot squeeze a {h}x{w} feature map; image side must be divisible by 2^levels")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class FactorOut(nn.Module):
    """Multi-scale factor-out with a learned conditional prior (RealNVP Sec. 3.6; Glow split prior).

    The first ``keep`` channels continue through the flow; the rest, ``z``, leave it with the
    prior ``N(mu, exp(logs)^2)`` where ``(mu, logs)`` come from a zero-initialised 3x3 conv of
    the kept channels plus a zero-initialised projection of the conditioning vector (so a
    class-conditional model has class-conditional prior means). The layer standardises ``z``:

    ``forward(x) = cat(x_keep, (z - mu) * exp(-logs))``, ``logdet = -sum(logs)``,

    so everything downstream is measured against ``N(0, I)``. It is an affine coupling whose
    transformed half goes straight to the prior; ``inverse`` maps ``cat(x_keep, eps)`` back.

    Args:
        channels: Channels of ``x``; ``channels // 2`` are kept.
        cond_dim: Size of the conditioning vector (0 = none).
        learned: Learn the prior from the kept half (``False``: standard normal).
    """

    def __init__(self, channels: int, cond_dim: int = 0, learned: bool = True) -> None:
        super().__init__()
        if channels < 2:
            raise GenimageError("factor-out needs at least 2 channels")
        self.keep = channels // 2
        out = channels - self.keep
        self.prior = nn.Conv2d(self.keep, 2 * out, 3, padding=1) if learned else None
        self.cond_proj = nn.Linear(cond_dim, 2 * out) if cond_dim > 0 else None
        for layer in (self.prior, self.cond_proj):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _params(self, keep: torch.Tensor, cond: torch.Tensor | None, out: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = keep.new_zeros(keep.shape[0], 2 * out, keep.shape[2], keep.shape[3])
        if self.prior is not None:
            h = h + self.prior(keep)
        if self.cond_proj is not None and cond is not None:
            h = h + self.cond_proj(cond)[:, :, None, None]
        mu, logs = h.chunk(2, dim=1)
        return mu, logs

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        keep, z = x[:, :self.keep], x[:, self.keep:]
        mu, logs = self._params(keep, cond, z.shape[1])
        return torch.cat([keep, (z - mu) * torch.exp(-logs)], 1), -_sum_per_sample(logs)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        keep, eps = y[:, :self.keep], y[:, self.keep:]
        mu, logs = self._params(keep, cond, eps.shape[1])
        return torch.cat([keep, mu + eps * torch.exp(logs)], 1)


class TopPrior(nn.Module):
    """Learned prior of the last level ``N(mu, exp(logs)^2)`` (Glow's top prior), standardised:
    ``forward(z) = (z - mu) * exp(-logs)``, ``logdet = -sum(logs)``.

    ``mu`` and ``logs`` are per-channel parameters plus a zero-initialised projection of the
    conditioning vector (class-conditional prior means, Glow Sec. 5 "class-conditional").
    All start at zero: a standard normal prior.
    """

    def __init__(self, channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.cond_proj = nn.Linear(cond_dim, 2 * channels) if cond_dim > 0 else None
        if self.cond_proj is not None:
            nn.init.zeros_(self.cond_proj.weight)
            nn.init.zeros_(self.cond_proj.bias)

    def _params(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logs = self.mu, self.logs
        if self.cond_proj is not None and cond is not None:
            dmu, dlogs = self.cond_proj(cond)[:, :, None, None].chunk(2, dim=1)
            mu, logs = mu + dmu, logs + dlogs
        return mu.expand(x.shape[0], -1, x.shape[2], x.shape[3]), logs.expand(x.shape[0], -1, x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logs = self._params(x, cond)
        return (x - mu) * torch.exp(-logs), -_sum_per_sample(logs)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        mu, logs = self._params(y, cond)
        return mu + y * torch.exp(logs)


class FlowSequence(nn.Module):
    """Layers applied in order; ``logdet`` is the sum of theirs (chain rule)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y, cond)
        return y


def glow_step(channels: int, hidden: int, cond_dim: int = 0, clamp: float = 2.0,
              generator: torch.Generator | None = None) -> FlowSequence:
    """One step of flow (Glow Fig. 2a): ActNorm, invertible 1x1 conv, channel affine coupling."""
    return FlowSequence([ActNorm(channels), InvConv1x1(channels, generator),
                         AffineCoupling(channels, hidden, cond_dim, "channel", 0, clamp)])


def checkerboard_step(channels: int, hidden: int, parity: int, cond_dim: int = 0,
                      clamp: float = 2.0) -> FlowSequence:
    """ActNorm then a checkerboard affine coupling (RealNVP's full-resolution couplings)."""
    return FlowSequence([ActNorm(channels),
                         AffineCoupling(channels, hidden, cond_dim, "checkerboard", parity, clamp)])
