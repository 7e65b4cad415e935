"""Known-region replacement in prediction space, for inpainting with any sampler.

Where the mask is 0 (keep), the wrapper answers as if the model had predicted the known
image exactly: ``x0_hat = x0_known`` and ``eps_hat = (x_t - alpha_t x0_known) / sigma_t``, the
noise that makes ``x_t`` a point of the path from ``x0_known``. Every sampler moves a point
along the path of its predicted ``(x0, eps)``, so in the kept region the trajectory stays on
the path of the known image (with the noise it started with, or fresh noise for the
stochastic samplers) and ends at it. This is the replacement method (Song et al. 2021,
App. I.2; Lugmayr et al. 2022, Sec. 4) written for ``(x0, eps)`` predictions rather than for
one sampler's update. Where the mask is 1 (regenerate), the model's own prediction is used;
it sees the noisy known region through ``x_t`` and fills the hole to match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genimage.models.denoiser import Cond, Prediction, per_sample_time
from genimage.paths.conversions import PathCoefficients


class KnownRegionDenoiser(nn.Module):
    """Wrap ``model`` (``(x, t, cond) -> Prediction``, with ``.path``) for inpainting.

    Args:
        model: The (guided) denoiser.
        known: ``(B, C, H, W)`` clean known image (latents for a latent model).
        mask: ``(B, 1, H, W)`` in ``[0, 1]``: 1 = regenerate, 0 = keep ``known``.
    """

    def __init__(self, model: nn.Module, known: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.path = model.path
        self.known = known
        self.mask = mask

    def forward(self, x: torch.Tensor, t, cond: Cond = None) -> Prediction:
        pred = self.model(x, t, cond)
        c = PathCoefficients.at(self.path, per_sample_time(t, x.shape[0]).to(x.device), x.ndim)
        known = self.known.to(x.device, torch.float64)
        eps_known = (x.double() - c.alpha * known) / c.sigma
        m = self.mask.to(x.device, torch.float64)
        x0 = m * pred.x0.double() + (1 - m) * known
        eps = m * pred.eps.double() + (1 - m) * eps_known
        return Prediction(x0.to(pred.x0.dtype), eps.to(pred.eps.dtype))


def latent_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A pixel mask ``(B, 1, H, W)`` at a latent grid of ``size x size``: a latent cell is
    regenerated if any pixel it covers is (max-pooling), so no masked pixel is left to a
    kept latent."""
    if mask.shape[-1] == size:
        return mask
    if mask.shape[-1] % size:
        return F.interpolate(mask, size=(size, size), mode="nearest")
    return F.max_pool2d(mask, mask.shape[-1] // size)
