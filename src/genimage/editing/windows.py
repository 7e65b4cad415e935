"""Painting a canvas larger than the model, window by window (MultiDiffusion).

A model trained at side ``S`` paints an ``H x W`` canvas (``H, W >= S``) as overlapping
``S x S`` windows. At every sampler step each window's clean-image prediction is computed
at the model's own size, and the canvas prediction is their weighted average over the
overlaps: MultiDiffusion (Bar-Tal et al. 2023, "MultiDiffusion: Fusing Diffusion Paths for
Controlled Image Generation", Eq. 5), whose closed-form step for squared-error fusion is

    Psi(J_t) = sum_i F_i^{-1}(W_i * Phi(F_i(J_t))) / sum_j F_j^{-1}(W_j)

with ``F_i`` the crop to window ``i``, ``Phi`` the model's step on it and ``W_i`` the
per-pixel weights; here ``Phi`` is the model's ``(x0, eps)`` prediction (every sampler
steps from it, and the averaged pair stays consistent, ``x_t = alpha x0 + sigma eps``, by
linearity) and ``W_i`` ramps linearly across the overlap (:func:`genimage.editing.canvas._ramp`,
the blend weights of upscaling tiles; uniform where windows do not overlap). Overlap 0 is the
no-overlap baseline: windows side by side, each painted alone.

The wrapper is the innermost step of the edit plan (:mod:`genimage.editing.plan`, order 50):
guidance and the known-region constraint of outpainting see the whole canvas, the network
only model-size windows. All windows of a batch go through the network in one call.
"""

from __future__ import annotations

import torch
from torch import nn

from genimage.editing.canvas import _ramp, tile_starts
from genimage.editing.plan import BatchContext, model_factor, register_wrapper
from genimage.models.denoiser import Cond, Prediction, per_sample_time


class WindowedDenoiser(nn.Module):
    """Wrap ``model`` (model-size inputs) to predict for a larger canvas (module docstring).

    Args:
        model: Denoiser ``(x, t, cond) -> Prediction`` for ``(B, C, s, s)`` inputs, with ``.path``.
        window: ``s``, the model's side in its own space (latent cells of a latent model).
        overlap: Minimum overlap of adjacent windows, in the same units, ``0 <= overlap < s``.
    """

    def __init__(self, model: nn.Module, window: int, overlap: int) -> None:
        super().__init__()
        self.model = model
        self.path = model.path
        self.window = int(window)
        self.overlap = int(overlap)

    def layout(self, height: int, width: int) -> tuple[list[int], list[int], torch.Tensor]:
        """``(ys, xs, weights)``: window starts along each axis and the ``(K, 1, s, s)`` weights."""
        s = self.window
        ys, xs = tile_starts(height, s, self.overlap), tile_starts(width, s, self.overlap)
        w = [(_ramp(height, ys, s, a)[:, None] * _ramp(width, xs, s, b)[None, :])[None]
             for a in range(len(ys)) for b in range(len(xs))]
        return ys, xs, torch.stack(w)

    def forward(self, x: torch.Tensor, t, cond: Cond = None) -> Prediction:
        b, _, h, w = x.shape
        s = self.window
        if (h, w) == (s, s):
            return self.model(x, t, cond)
        ys, xs, weights = self.layout(h, w)
        spots = [(y, x0) for y in ys for x0 in xs]
        k = len(spots)
        crops = torch.cat([x[..., y:y + s, x0:x0 + s] for y, x0 in spots])  # window-major: row i*b + j
        tt = per_sample_time(t, b).to(x.device).repeat(k)
        cc = None if cond is None else {key: torch.cat([v] * k) for key, v in cond.items()}
        pred = self.model(crops, tt, cc)
        weights = weights.to(x.device)
        x0 = torch.zeros(b, x.shape[1], h, w, dtype=torch.float64, device=x.device)
        eps = torch.zeros_like(x0)
        norm = torch.zeros(1, 1, h, w, dtype=torch.float64, device=x.device)
        for i, (y, x0_) in enumerate(spots):
            wi = weights[i]
            rows = slice(i * b, (i + 1) * b)
            x0[..., y:y + s, x0_:x0_ + s] += wi * pred.x0[rows].double()
            eps[..., y:y + s, x0_:x0_ + s] += wi * pred.eps[rows].double()
            norm[..., y:y + s, x0_:x0_ + s] += wi
        return Prediction((x0 / norm).to(pred.x0.dtype), (eps / norm).to(pred.eps.dtype))


@register_wrapper("windows", order=50)
def _windows(model: nn.Module, ctx: BatchContext) -> nn.Module | None:
    """A canvas edit (``EditSpec.window_overlap`` set): the network paints model-size windows."""
    if ctx.edit is None or ctx.edit.window_overlap is None:
        return None
    f = model_factor(ctx.config)
    return WindowedDenoiser(model, ctx.config.image_size // f, ctx.edit.window_overlap // f)
