"""RePaint's resampling for inpainting (Lugmayr et al. 2022, "RePaint: Inpainting using
Denoising Diffusion Probabilistic Models", Alg. 1 with jump length 1).

Replacing the known region alone leaves the generated region only loosely fitted to it: the
model sees the known pixels, but each step commits to its choice. RePaint goes back and forth:
after each step ``t -> s`` the result is noised back to ``t`` with the path's transition
``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)`` (Kingma et al. 2021, Eq. 4) and the step
is taken again, ``resample`` times in all, so the generated region is re-fitted to the known
one at every noise level. It costs ``resample`` times the network evaluations.

Each step is a call of the sampler on the two-point schedule ``[t, s]``: exact for the one-
step samplers (Euler, Heun, DDIM, DDPM); DPM-Solver++(2M), which needs the previous step,
becomes its first-order form (which is DDIM). The re-noising draws from each image's own
generator, so image ``i`` still depends only on seed ``i``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from genimage.paths.conversions import PathCoefficients
from genimage.samplers.noise import randn


def renoise(path, x_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, generators) -> torch.Tensor:
    """A draw of ``x_t ~ q(x_t | x_s)`` for ``t > s`` on ``path``."""
    cs, ct = PathCoefficients.at(path, s, ndim=1), PathCoefficients.at(path, t, ndim=1)
    a_ts = float(ct.alpha) / float(cs.alpha)
    var = max(float(ct.sigma) ** 2 - a_ts**2 * float(cs.sigma) ** 2, 0.0)
    z = randn(tuple(x_s.shape), generators).to(x_s.device)
    return (a_ts * x_s.double() + math.sqrt(var) * z.double()).to(x_s.dtype)


@torch.no_grad()
def resampled(sampler: Callable, model, x: torch.Tensor, timesteps: torch.Tensor, *, resample: int, cond=None,
              generator=None, callback=None, **extra) -> torch.Tensor:
    """Run ``sampler`` step by step over ``timesteps``, each step taken ``resample`` times
    with re-noising in between (module docstring)."""
    for i in range(len(timesteps) - 1):
        pair = timesteps[i:i + 2]
        report = None if callback is None else (lambda info, i=i: callback({**info, "i": i}))
        for u in range(resample):
            last = u == resample - 1
            x_s = sampler(model, x, pair, cond=cond, generator=generator, callback=report if last else None, **extra)
            if not last:
                x = renoise(model.path, x_s, pair[1], pair[0], generator)
        x = x_s
    return x
