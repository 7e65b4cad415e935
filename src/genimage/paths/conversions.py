"""Every conversion between what a network predicts and the pair ``(x0, eps)``.

With ``x = alpha x0 + sigma eps`` (all coefficients broadcast per sample):

* ``"eps"``: the added noise (Ho et al. 2020, Eq. 14).
* ``"x0"``: the clean image.
* ``"v"``: ``v = alpha eps - sigma x0`` (Salimans & Ho 2022, Sec. 4); inverted for any
  path through the 2x2 system ``[x; v] = [[alpha, sigma], [-sigma, alpha]] [x0; eps]``.
* ``"velocity"``: ``u = alpha' x0 + sigma' eps``, the time derivative of the path, which
  flow matching regresses (Lipman et al. 2023, Eq. 8); for the linear path ``u = eps - x0``.
* ``"edm"``: the raw output ``F`` of EDM's preconditioned network (Karras et al. 2022,
  Eq. 7): with ``y = x / alpha`` and ``s = sigma / alpha``,
  ``x0 = c_skip(s) y + c_out(s) F``, ``c_skip = sd^2 / (s^2 + sd^2)``,
  ``c_out = s sd / sqrt(s^2 + sd^2)``; the input is scaled by ``c_in = 1 / sqrt(s^2 + sd^2)``.

No sampler or model does a conversion of its own; they all call this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genimage.errors import GenimageError

PREDICTIONS = ("eps", "x0", "v", "velocity", "edm")


@dataclass(frozen=True)
class PathCoefficients:
    """Per-sample path coefficients, float64, shaped to broadcast against ``(B, C, H, W)``."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor

    @classmethod
    def at(cls, path, t: torch.Tensor | float, ndim: int = 4) -> "PathCoefficients":
        """Coefficients of ``path`` at times ``t`` (scalar or ``(B,)``), reshaped to ``ndim`` dims."""
        t = torch.as_tensor(t, dtype=torch.float64)
        shape = (-1,) + (1,) * (ndim - 1) if t.ndim else ()
        return cls(
            path.alpha(t).reshape(shape),
            path.sigma(t).reshape(shape),
            path.d_alpha(t).reshape(shape),
            path.d_sigma(t).reshape(shape),
        )


def noisy(x0: torch.Tensor, eps: torch.Tensor, c: PathCoefficients) -> torch.Tensor:
    """A point of the path: ``x_t = alpha x0 + sigma eps`` (float64 coefficients, cast to ``x0.dtype``)."""
    return (c.alpha.to(x0.device) * x0.double() + c.sigma.to(x0.device) * eps.double()).to(x0.dtype)


def check_prediction(kind: str) -> str:
    if kind not in PREDICTIONS:
        raise GenimageError(f"unknown prediction type {kind!r}; choose one of: {', '.join(PREDICTIONS)}")
    return kind


def edm_scalings(c: PathCoefficients, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's ``(c_skip, c_out, c_in)`` for VE level ``s = sigma / alpha`` (Karras et al. 2022, Table 1)."""
    s = c.sigma / c.alpha
    denom = s**2 + sigma_data**2
    return sigma_data**2 / denom, s * sigma_data / denom.sqrt(), 1.0 / denom.sqrt()


def input_scale(kind: str, c: PathCoefficients, sigma_data: float = 0.5) -> torch.Tensor:
    """Factor the denoiser multiplies ``x_t`` by before the backbone (``c_in``; 1 except for EDM)."""
    if kind == "edm":
        return edm_scalings(c, sigma_data)[2] / c.alpha
    return torch.ones_like(c.alpha)


def to_x0_eps(
    kind: str, raw: torch.Tensor, x: torch.Tensor, c: PathCoefficients, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a raw network output of type ``kind`` at ``x`` into ``(x0, eps)``.

    Computation happens in float64 coefficients and the result is cast to ``x.dtype``.
    Divisions are by ``alpha`` only for ``"eps"`` (undefined where ``alpha = 0``) and by
    ``sigma`` only for ``"x0"``/``"edm"`` (undefined where ``sigma = 0``).
    """
    dtype = x.dtype
    r, x = raw.double(), x.double()
    a, s = c.alpha, c.sigma
    if kind == "eps":
        eps = r
        x0 = (x - s * eps) / a
    elif kind == "x0":
        x0 = r
        eps = (x - a * x0) / s
    elif kind == "v":
        det = a**2 + s**2
        x0 = (a * x - s * r) / det
        eps = (s * x + a * r) / det
    elif kind == "velocity":
        det = a * c.d_sigma - s * c.d_alpha
        x0 = (c.d_sigma * x - s * r) / det
        eps = (a * r - c.d_alpha * x) / det
    elif kind == "edm":
        c_skip, c_out, _ = edm_scalings(c, sigma_data)
        x0 = c_skip * (x / a) + c_out * r
        eps = (x - a * x0) / s
    else:
        check_prediction(kind)
        raise AssertionError
    return x0.to(dtype), eps.to(dtype)


def from_x0_eps(
    kind: str, x0: torch.Tensor, eps: torch.Tensor, c: PathCoefficients, sigma_data: float = 0.5
) -> torch.Tensor:
    """The target a network of type ``kind`` should output for clean ``x0`` and noise ``eps``."""
    dtype = x0.dtype
    x0, eps = x0.double(), eps.double()
    a, s = c.alpha, c.sigma
    if kind == "eps":
        out = eps
    elif kind == "x0":
        out = x0
    elif kind == "v":
        out = a * eps - s * x0
    elif kind == "velocity":
        out = c.d_alpha * x0 + c.d_sigma * eps
    elif kind == "edm":
        c_skip, c_out, _ = edm_scalings(c, sigma_data)
        x = a * x0 + s * eps
        out = (x0 - c_skip * (x / a)) / c_out
    else:
        check_prediction(kind)
        raise AssertionError
    return out.to(dtype)
