"""Noise paths as data: ``x_t = alpha(t) * x0 + sigma(t) * eps``.

A path is the forward (noising) process written as two scalar functions of a
continuous time ``t`` and their derivatives (Karras et al. 2022, Eq. 4 uses
``s(t) = alpha(t)`` and ``sigma(t)``; Lipman et al. 2023 write the same interpolant
for flow matching). Samplers and objectives read ``alpha``, ``sigma`` and their
derivatives from here and never hard-code a schedule.

``sigma_hat(t) = sigma(t) / alpha(t)`` is the equivalent variance-exploding noise level
(the scale of ``x / alpha``); timestep schedules such as Karras' are defined on it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genimage.registry import Registry

PATHS: Registry[type["NoisePath"]] = Registry("noise path")


def as_time(t: float | torch.Tensor) -> torch.Tensor:
    """Time as a float64 tensor (schedule coefficients are computed in double precision)."""
    return torch.as_tensor(t, dtype=torch.float64)


class NoisePath:
    """Base class. Subclasses implement ``alpha``, ``sigma``, ``d_alpha``, ``d_sigma`` and
    ``t_from_sigma_hat`` on float64 tensors of any shape.

    Attributes:
        name: Registry name, saved in config.json.
        t_min: Smallest time used for training and as the last noisy sampling time.
        t_max: Largest time; sampling starts here from ``sigma(t_max) * noise``.
        sigma_hat_max_schedule: Largest VE noise level a Karras schedule uses (finite even
            when ``sigma_hat(t_max)`` is infinite, as for the linear path at ``t = 1``).
    """

    name: str = ""
    t_min: float = 0.0
    t_max: float = 1.0
    sigma_hat_max_schedule: float = 80.0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Time derivative of ``alpha`` at ``t``."""
        raise NotImplementedError

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Time derivative of ``sigma`` at ``t``."""
        raise NotImplementedError

    def t_from_sigma_hat(self, sigma_hat: torch.Tensor) -> torch.Tensor:
        """Inverse of ``sigma_hat(t) = sigma(t) / alpha(t)`` (monotone in ``t``)."""
        raise NotImplementedError

    def c_noise(self, t: torch.Tensor) -> torch.Tensor:
        """The noise-level number fed to the backbone (default ``1000 * t``)."""
        return 1000.0 * as_time(t)

    # ----------------------------------------------------------------- helpers
    def sigma_hat(self, t: torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        a = self.alpha(t)
        return torch.where(a > 0, self.sigma(t) / a.clamp_min(1e-300), torch.full_like(a, math.inf))

    def coefficients(self, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))`` as float64 tensors."""
        t = as_time(t)
        return self.alpha(t), self.sigma(t)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}()"


def build_path(name: str) -> NoisePath:
    """Instantiate the path registered as ``name``."""
    return PATHS.get(name)()
