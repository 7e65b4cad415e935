"""Timestep schedules: decreasing tensors of path times ``t_0 > t_1 > ... > t_n = 0``.

A schedule with ``n`` steps has ``n + 1`` entries; the sampler evaluates the model at the
first ``n`` and ends at ``t_n = 0`` (the clean image).
"""

from __future__ import annotations

import numbers

import torch

from genimage.errors import GenimageError
from genimage.paths.base import NoisePath
from genimage.registry import Registry

SCHEDULES: Registry = Registry("timestep schedule")


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise GenimageError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def _append_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(1)])


@SCHEDULES.register("uniform")
def uniform(path: NoisePath, steps: int) -> torch.Tensor:
    """Equally spaced times from ``t_max`` to ``t_min`` (DDIM's "uniform" spacing), then 0."""
    steps = _check_steps(steps)
    if path.t_min == 0.0:
        return torch.linspace(path.t_max, 0.0, steps + 1, dtype=torch.float64)
    if steps == 1:
        return _append_zero(torch.tensor([path.t_max], dtype=torch.float64))
    return _append_zero(torch.linspace(path.t_max, path.t_min, steps, dtype=torch.float64))


@SCHEDULES.register("karras")
def karras(path: NoisePath, steps: int, rho: float = 7.0, sigma_min: float | None = None,
           sigma_max: float | None = None) -> torch.Tensor:
    """Karras et al. (2022), Eq. 5: noise levels spaced uniformly in ``sigma^(1/rho)``.

    Defined on the VE noise level ``sigma_hat = sigma / alpha`` and mapped back to path time,
    so it applies to every path. ``sigma_min``/``sigma_max`` default to the path's range
    (``sigma_max`` capped at ``path.sigma_hat_max_schedule``).
    """
    steps = _check_steps(steps)
    t_lo = max(path.t_min, 1e-3 if path.t_min == 0.0 else path.t_min)
    s_min = float(path.sigma_hat(torch.tensor(t_lo))) if sigma_min is None else sigma_min
    s_max = min(float(path.sigma_hat(torch.tensor(path.t_max))), path.sigma_hat_max_schedule)
    s_max = s_max if sigma_max is None else sigma_max
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    inv = s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))
    return _append_zero(path.t_from_sigma_hat(inv**rho))


@SCHEDULES.register("discrete")
def discrete(path: NoisePath, steps: int) -> torch.Tensor:
    """The timesteps of the model's own discrete scheduler (imported Stable-Diffusion-format
    models, :class:`genimage.interop.sd_path.DiscretePath`): DDIM over them equals diffusers'."""
    steps = _check_steps(steps)
    own = getattr(path, "scheduler_timesteps", None)
    if own is None:
        raise GenimageError(f"schedule 'discrete' needs a model with a discrete (Stable-Diffusion) schedule; the "
                            f"{path.name!r} path has none: use --schedule uniform or karras")
    return own(steps)


def make_schedule(name: str, path: NoisePath, steps: int) -> torch.Tensor:
    """The schedule registered as ``name`` for ``path`` with ``steps`` steps."""
    return SCHEDULES.get(name)(path, steps)
