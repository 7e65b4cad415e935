"""Editing by range-null-space decomposition of the model's prediction, for any sampler.

A linear degradation ``A`` (a mask, a downsampling) and an observation ``y = A x`` fix part of
the image; the rest is free. DDNM (Wang et al. 2023, "Zero-Shot Image Restoration Using
Denoising Diffusion Null-Space Model", Eq. 13) replaces, at every step, the fixed part of the
predicted clean image by the observation, and keeps the model's guess for the free part:

    x0' = A^+ y + (I - A^+ A) x0_hat,    eps' = (x_t - alpha_t x0') / sigma_t

``eps'`` is the noise that puts ``x_t`` on the path from ``x0'``. Every sampler (Euler, Heun,
DDIM, DPM-Solver++, DDPM) moves ``x`` along its predicted ``(x0, eps)``, so all of them use the
rule unchanged, and the result satisfies ``A x0 = y``.

* Inpainting: ``A^+ A`` keeps the known pixels (mask 0), and ``A^+ y`` is the known image
  there. This is the replacement method (Song et al. 2021, App. I.2; Lugmayr et al. 2022,
  Sec. 4), written for predictions.
* Super-resolution: ``A`` averages ``f x f`` blocks and ``A^+`` repeats each value over its
  block (``A A^+ = I``). ``A^+ A x`` is then the blocky low-pass of ``x``, and the output
  averages back to the low-resolution input exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from genimage.models.denoiser import Cond, Prediction, per_sample_time
from genimage.paths.conversions import PathCoefficients


class NullSpaceDenoiser(nn.Module):
    """Wrap ``model`` (``(x, t, cond) -> Prediction``, with ``.path``) so that its clean
    prediction always satisfies the observation (module docstring).

    Args:
        model: The (guided) denoiser.
        project: ``x -> A^+ A x``, the part of ``x`` the observation fixes.
        target: ``A^+ y``, what that part must be.
    """

    def __init__(self, model: nn.Module, project: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.path = model.path
        self.project = project
        self.target = target

    def forward(self, x: torch.Tensor, t, cond: Cond = None) -> Prediction:
        pred = self.model(x, t, cond)
        c = PathCoefficients.at(self.path, per_sample_time(t, x.shape[0]).to(x.device), x.ndim)
        x0_hat = pred.x0.double()
        x0 = x0_hat - self.project(x0_hat) + self.target.to(x.device, torch.float64)
        eps = (x.double() - c.alpha * x0) / c.sigma
        return Prediction(x0.to(pred.x0.dtype), eps.to(pred.eps.dtype))


class KnownRegionDenoiser(NullSpaceDenoiser):
    """Inpainting: keep ``known`` where ``mask`` is 0, regenerate where it is 1.

    Args:
        model: The (guided) denoiser.
        known: ``(B, C, H, W)`` clean known image (latents for a latent model).
        mask: ``(B, 1, H, W)`` in ``{0, 1}``: 1 = regenerate, 0 = keep ``known``.
    """

    def __init__(self, model: nn.Module, known: torch.Tensor, mask: torch.Tensor) -> None:
        keep = (1 - mask).to(torch.float64)
        super().__init__(model, lambda x: keep.to(x.device) * x, keep * known.to(torch.float64))


class LowResolutionDenoiser(NullSpaceDenoiser):
    """Super-resolution: outputs whose ``factor x factor`` block means equal ``low``.

    Args:
        model: The (guided) denoiser.
        low: ``(B, C, H / factor, W / factor)`` low-resolution observation.
        factor: The integer upscaling factor.
    """

    def __init__(self, model: nn.Module, low: torch.Tensor, factor: int) -> None:
        def project(x: torch.Tensor) -> torch.Tensor:
            return block_repeat(F.avg_pool2d(x, factor), factor)

        super().__init__(model, project, block_repeat(low.to(torch.float64), factor))


def block_repeat(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``A^+`` of block averaging: each value repeated over a ``factor x factor`` block."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def latent_mask(mask: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """A pixel mask ``(B, 1, H, W)`` at a latent grid of ``size x size`` (or ``(h, w)``): a
    latent cell is regenerated if any pixel it covers is (max-pooling), so no masked pixel is
    left to a kept latent."""
    if not isinstance(size, int):
        h, w = (int(v) for v in size)
        if tuple(mask.shape[-2:]) == (h, w):
            return mask
        if mask.shape[-2] % h or mask.shape[-1] % w or mask.shape[-2] // h != mask.shape[-1] // w:
            return F.interpolate(mask, size=(h, w), mode="nearest")
        return F.max_pool2d(mask, mask.shape[-1] // w)
    if mask.shape[-1] == size:
        return mask
    if mask.shape[-1] % size:
        return F.interpolate(mask, size=(size, size), mode="nearest")
    return F.max_pool2d(mask, mask.shape[-1] // size)
