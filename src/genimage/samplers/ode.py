"""Deterministic samplers of the probability-flow ODE, written for any noise path.

Each is a pure function ``(model, x, timesteps, *, cond, generator, callback) -> x``:
``model(x, t, cond)`` returns a :class:`~genimage.models.denoiser.Prediction` and
``model.path`` gives ``alpha, sigma``. ``x`` enters at ``timesteps[0]`` and leaves at
``timesteps[-1] = 0``.

The ODE in the path's own time is ``dx/dt = alpha'(t) x0 + sigma'(t) eps`` (for the
linear path, the rectified-flow velocity; for EDM's path, Karras et al. 2022, Eq. 4).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from genimage.models.denoiser import Cond
from genimage.paths.conversions import PathCoefficients
from genimage.samplers.noise import randn

Callback = Callable[[dict], None] | None


def _coef(path, t) -> PathCoefficients:
    return PathCoefficients.at(path, t, ndim=1)


def _mix(a, x: torch.Tensor, b, y: torch.Tensor) -> torch.Tensor:
    """``a * x + b * y`` with float64 scalar coefficients, in ``x``'s dtype."""
    return (float(a) * x.double() + float(b) * y.double()).to(x.dtype)


def _report(callback: Callback, i: int, t, x, pred, nfe: int) -> None:
    if callback is not None:
        callback({"i": i, "t": float(t), "x": x, "x0": pred.x0, "nfe": nfe})


def _velocity(path, t) -> tuple[float, float]:
    """``(alpha'(t), sigma'(t))``."""
    c = _coef(path, t)
    return float(c.d_alpha), float(c.d_sigma)


def _step_coefficients(path, t, t_next) -> tuple[float, float, float, float]:
    """``(alpha_t, sigma_t, alpha_s, sigma_s)`` for a step from ``t`` to ``s = t_next``."""
    cur, nxt = _coef(path, t), _coef(path, t_next)
    return float(cur.alpha), float(cur.sigma), float(nxt.alpha), float(nxt.sigma)


def _transition(a_t: float, s_t: float, a_s: float, s_s: float) -> tuple[float, float]:
    """``(alpha_{t|s}, sigma_{t|s}^2)`` of ``q(x_t | x_s)``: ``alpha_t / alpha_s`` and
    ``sigma_t^2 - alpha_{t|s}^2 sigma_s^2`` (Kingma et al. 2021, Eq. 4)."""
    a_ts = a_t / a_s
    return a_ts, max(s_t**2 - a_ts**2 * s_s**2, 0.0)


@torch.no_grad()
def euler(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond: Cond = None, generator=None,
          callback: Callback = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE in path time (Karras et al. 2022,
    Algorithm 1 without the Heun correction). First order. The last step, to ``t = 0``,
    returns the denoised estimate (exactly the Euler step for the EDM and linear paths).
    """
    path = model.path
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        if t_next == 0:
            x = pred.x0
        else:
            da, ds = _velocity(path, t)
            dt = float(t_next - t)
            x = (x.double() + dt * (da * pred.x0.double() + ds * pred.eps.double())).to(x.dtype)
        _report(callback, i, t, x, pred, i + 1)
    return x


@torch.no_grad()
def heun(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond: Cond = None, generator=None,
         callback: Callback = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic sampler).

    Uses 2 network evaluations per step except the last (to ``t = 0``), which returns the
    denoised estimate as in the paper's final Euler step.
    """
    path = model.path
    nfe = 0
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        nfe += 1
        if t_next == 0:
            x = pred.x0
        else:
            dt = float(t_next - t)
            da, ds = _velocity(path, t)
            d = da * pred.x0.double() + ds * pred.eps.double()
            x_euler = (x.double() + dt * d).to(x.dtype)
            pred2 = model(x_euler, t_next, cond)
            nfe += 1
            da2, ds2 = _velocity(path, t_next)
            d2 = da2 * pred2.x0.double() + ds2 * pred2.eps.double()
            x = (x.double() + dt * 0.5 * (d + d2)).to(x.dtype)
        _report(callback, i, t, x, pred, nfe)
    return x


@torch.no_grad()
def ddim(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond: Cond = None, generator=None,
         callback: Callback = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, Eq. 12) for any path:
    ``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z`` with
    ``c = eta * sqrt(posterior variance)`` (Eq. 16). ``eta = 0`` is deterministic (and equals
    Euler's method in the coordinates ``x / alpha``, ``sigma / alpha``); ``eta = 1`` is the
    DDPM ancestral sampler.
    """
    path = model.path
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        a_t, s_t, a_s, s_s = _step_coefficients(path, t, t_next)
        c = 0.0
        if eta > 0 and s_s > 0:
            # posterior variance of q(x_s | x_t, x0): sigma_{t|s}^2 sigma_s^2 / sigma_t^2
            _, var_ts = _transition(a_t, s_t, a_s, s_s)
            c = eta * (var_ts * s_s**2 / s_t**2) ** 0.5
        x = _mix(a_s, pred.x0, max(s_s**2 - c**2, 0.0) ** 0.5, pred.eps)
        if c > 0:
            x = (x.double() + c * randn(x.shape, generator, dtype=torch.float64).to(x.device)).to(pred.x0.dtype)
        _report(callback, i, t, x, pred, i + 1)
    return x


@torch.no_grad()
def dpmpp_2m(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond: Cond = None, generator=None,
             callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction
    multistep solver of second order, for any path. With ``lambda = log(alpha / sigma)`` and
    ``h = lambda_s - lambda_t``:
    ``x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D``, where ``D = x0`` on the first
    and last step and ``D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev``, ``r = h_prev / h``, otherwise.
    Ratios are formed directly so ``alpha_t = 0`` (pure noise) and ``sigma_s = 0`` are exact.
    """
    path = model.path
    x0_prev = None
    h_prev = None
    for i in range(len(timesteps) - 1):
        t, t_next = timesteps[i], timesteps[i + 1]
        pred = model(x, t, cond)
        a_t, s_t, a_s, s_s = _step_coefficients(path, t, t_next)
        # e^{-h} = (alpha_t sigma_s) / (sigma_t alpha_s)
        exp_neg_h = (a_t * s_s) / (s_t * a_s) if a_s > 0 else 0.0
        h = None
        if a_t > 0 and s_s > 0 and a_s > 0:
            h = math.log(a_s / s_s) - math.log(a_t / s_t)
        if x0_prev is None or h is None or h_prev is None:
            d = pred.x0
        else:
            r = h_prev / h
            d = _mix(1 + 1 / (2 * r), pred.x0, -1 / (2 * r), x0_prev)
        x = _mix(s_s / s_t, x, a_s * (1 - exp_neg_h), d)
        x0_prev, h_prev = pred.x0, h
        _report(callback, i, t, x, pred, i + 1)
    return x
