"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

A consistency model maps any point of a trajectory straight to its end: ``x0 = f(x_t, t)``.
One step is ``x0 = f(x_{t_max}, t_max)``; each further step re-noises the estimate to the
next, lower time with fresh noise, ``x_s = alpha(s) x0 + sigma(s) z``, and maps it back.
With 1-2 steps this is the sampler of consistency models; on an ordinary denoiser it is a
valid but poor sampler (every step forgets the current noise).
"""

from __future__ import annotations

import torch

from genimage.paths.conversions import PathCoefficients
from genimage.samplers.noise import randn


@torch.no_grad()
def consistency(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond=None, generator=None,
                callback=None) -> torch.Tensor:
    """Args:
        model: Denoiser (or CFG wrapper) whose ``x0`` prediction is the consistency function.
        x: Noise at ``timesteps[0]``.
        timesteps: Descending times ending at 0; the model is evaluated at every time but the last.
        generator: Generator(s) for the re-noising draws.
    """
    path = model.path
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        x0 = pred.x0
        if t_next > 0:
            c = PathCoefficients.at(path, t_next, ndim=1)
            z = randn(x.shape, generator, dtype=torch.float64).to(x.device)
            x = (float(c.alpha) * x0.double() + float(c.sigma) * z).to(x0.dtype)
        else:
            x = x0
        if callback is not None:
            callback({"i": i, "t": float(t), "x": x, "x0": x0, "nfe": i + 1})
    return x
