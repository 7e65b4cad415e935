"""Stochastic (ancestral) samplers."""

from __future__ import annotations

import torch

from genimage.models.denoiser import Cond
from genimage.samplers.noise import randn
from genimage.samplers.ode import Callback, _report, _step_coefficients, _transition


@torch.no_grad()
def ddpm(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond: Cond = None, generator=None,
         callback: Callback = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on arbitrary timesteps:
    draw ``x_s`` from the Gaussian posterior ``q(x_s | x_t, x0 = x0_hat)`` (Eq. 6–7) with
    ``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``:
    mean ``alpha_{t|s} sigma_s^2 / sigma_t^2 * x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 * x0``,
    variance ``sigma_{t|s}^2 sigma_s^2 / sigma_t^2``. The last step (to ``t = 0``) returns
    the mean, ``x0_hat``, with no noise.
    """
    path = model.path
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        a_t, s_t, a_s, s_s = _step_coefficients(path, t, t_next)
        if s_s == 0:
            x = pred.x0
        else:
            a_ts, var_ts = _transition(a_t, s_t, a_s, s_s)
            mean = (a_ts * s_s**2 / s_t**2) * x.double() + (a_s * var_ts / s_t**2) * pred.x0.double()
            std = (var_ts * s_s**2 / s_t**2) ** 0.5
            x = (mean + std * randn(x.shape, generator, dtype=torch.float64).to(x.device)).to(x.dtype)
        _report(callback, i, t, x, pred, i + 1)
    return x
