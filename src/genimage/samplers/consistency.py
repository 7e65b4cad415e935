"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

A consistency model maps any point of a trajectory straight to its end: ``x0 = f(x_t, t)``.
One step is ``x0 = f(x_{t_max}, t_max)``; each further step re-noises the estimate to the
next, lower time with fresh noise, ``x_s = alpha(s) x0 + sigma(s) z``, and maps it back.
With 1-2 steps this is the sampler of consistency models; on an ordinary denoiser it is a
valid but poor sampler (every step forgets the current noise).

The times the estimate is re-noised to (``tau_1 > ... > tau_{N-1}`` of Algorithm 1) are by
default the interior of the schedule (``t = 0.5`` for the uniform 2-step schedule). The paper
picks them per model by search (Sec. 6: greedy/ternary search of the FID), so they can be set
with ``renoise_times``; on the digits student ``t = 0.3`` instead of 0.5 lowers the 2-step
Fréchet distance markedly (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Sequence

import torch

from genimage.errors import GenimageError
from genimage.paths.conversions import PathCoefficients
from genimage.samplers.noise import randn


def with_renoise_times(timesteps: torch.Tensor, renoise_times: float | Sequence[float] | None) -> torch.Tensor:
    """``timesteps`` with its interior replaced by ``renoise_times`` (Algorithm 1's ``tau_n``).

    ``None`` keeps ``timesteps``. Otherwise there must be one time per step after the first
    (``len(timesteps) - 2``), strictly decreasing, strictly between 0 and ``timesteps[0]``;
    a single number is accepted for 2 steps, and a comma-separated string (``"0.6,0.2"``). Raises :class:`GenimageError` otherwise."""
    if renoise_times is None:
        return timesteps
    if isinstance(renoise_times, str):  # "0.6,0.2" from a command line or a JSON record
        values = [v.strip() for v in renoise_times.split(",")]
    elif isinstance(renoise_times, (int, float)):
        values = [renoise_times]
    else:
        values = list(renoise_times)
    try:
        taus = torch.tensor([float(v) for v in values], dtype=timesteps.dtype)
    except (TypeError, ValueError):
        raise GenimageError(f"renoise_times must be numbers, got {renoise_times!r}") from None
    steps = len(timesteps) - 1
    if len(taus) != steps - 1:
        raise GenimageError(f"renoise_times needs {steps - 1} time(s) for {steps} consistency steps "
                            f"(one per step after the first), got {len(taus)}")
    top = float(timesteps[0])
    if len(taus) and not (bool((taus > 0).all()) and bool((taus < top).all()) and bool((taus[1:] < taus[:-1]).all())):
        raise GenimageError(f"renoise_times must decrease strictly and lie in (0, {top:g}), got {values}")
    return torch.cat([timesteps[:1], taus, timesteps[-1:]])


@torch.no_grad()
def consistency(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond=None, generator=None,
                callback=None, renoise_times: float | Sequence[float] | None = None) -> torch.Tensor:
    """Args:
        model: Denoiser (or CFG wrapper) whose ``x0`` prediction is the consistency function.
        x: Noise at ``timesteps[0]``.
        timesteps: Descending times ending at 0; the model is evaluated at every time but the last.
        generator: Generator(s) for the re-noising draws.
        renoise_times: Times to re-noise to before each step after the first, replacing the
            interior of ``timesteps`` (see :func:`with_renoise_times`); ``None``: the schedule's.
    """
    path = model.path
    timesteps = with_renoise_times(timesteps, renoise_times)
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
