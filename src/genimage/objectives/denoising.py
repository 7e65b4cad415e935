"""The one denoising objective behind DDPM, EDM and (conditional) flow matching.

All three regress the denoiser's raw output onto the target of its prediction type at a
random time ``t`` of a random noisy sample ``x_t = alpha_t x0 + sigma_t eps``; they differ
only in path, prediction type and the distribution of ``t``:

* DDPM ``L_simple`` (Ho et al. 2020, Eq. 14): VP path, ``eps`` (or ``v``, Salimans & Ho
  2022) target, ``t`` uniform, unit weight.
* EDM (Karras et al. 2022, Eq. 8 with Table 1): VE path, ``ln sigma ~ N(-1.2, 1.2^2)``; the
  preconditioned ``F`` target with unit weight equals EDM's ``lambda(sigma) ||D - x0||^2``
  since ``lambda(sigma) = 1 / c_out(sigma)^2``.
* Conditional flow matching / rectified flow (Lipman et al. 2023, Eq. 23; Liu et al. 2023,
  Eq. 1): linear path, velocity target ``eps - x0``.

The objective returns *unreduced* per-sample losses; the trainer reduces them.
"""

from __future__ import annotations

from typing import Callable

import torch

from genimage.models.denoiser import Denoiser
from genimage.paths.conversions import noisy

TimeSampler = Callable[[int, torch.Generator, object], torch.Tensor]


def drop_condition(cond: dict[str, torch.Tensor] | None, prob: float,
                   generator: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Replace each sample's conditioning by "none" with probability ``prob`` (labels -> -1,
    text mask -> all False), which trains the unconditional model that classifier-free
    guidance needs (Ho & Salimans 2022, Algorithm 1)."""
    if cond is None or prob <= 0:
        return cond
    batch = next(iter(cond.values())).shape[0]
    drop = torch.rand(batch, generator=generator) < prob
    out = dict(cond)
    if "label" in out:
        out["label"] = torch.where(drop.to(out["label"].device), torch.full_like(out["label"], -1), out["label"])
    if "text_mask" in out:
        keep = (~drop).to(out["text_mask"].device).view(-1, *([1] * (out["text_mask"].ndim - 1)))
        out["text_mask"] = out["text_mask"] & keep
    return out


class DenoisingObjective:
    """Per-sample denoising loss.

    Args:
        time_sampler: ``(batch, generator, path) -> t (B,)`` float64.
        cond_drop_prob: Probability of dropping each sample's conditioning (for CFG).
    """

    def __init__(self, time_sampler: TimeSampler, cond_drop_prob: float = 0.1) -> None:
        self.time_sampler = time_sampler
        self.cond_drop_prob = cond_drop_prob

    def __call__(self, model: Denoiser, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Args:
            model: The :class:`~genimage.models.denoiser.Denoiser` being trained.
            batch: ``{"image": (B, C, H, W) in [-1, 1], "cond": dict or None}``.
            generator: CPU generator for all randomness of this loss (checkpointed by the trainer).

        Returns:
            Loss per sample ``(B,)`` in float32.
        """
        x0 = batch["image"]
        b = x0.shape[0]
        t = self.time_sampler(b, generator, model.path)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        cond = drop_condition(batch.get("cond"), self.cond_drop_prob, generator)
        c = model.coefficients(t, x0.ndim)
        x_t = noisy(x0, eps, c)
        raw = model.raw(x_t, t, cond)
        target = model.target(x0, eps, t)
        return (raw.float() - target.float()).pow(2).flatten(1).mean(1)
