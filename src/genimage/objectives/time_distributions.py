"""Training-time distributions over path time ``t`` (each returns float64 ``(B,)``)."""

from __future__ import annotations

import torch

from genimage.paths.base import NoisePath


def uniform_time(batch: int, generator: torch.Generator, path: NoisePath) -> torch.Tensor:
    """``t ~ U(t_min, t_max)`` (Ho et al. 2020 sample timesteps uniformly)."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return path.t_min + (path.t_max - path.t_min) * u


def logit_normal_time(batch: int, generator: torch.Generator, path: NoisePath,
                      mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """``t = sigmoid(n)``, ``n ~ N(mean, std^2)``: the logit-normal sampling of Esser et al.
    (2024, "Scaling Rectified Flow Transformers", Eq. 19), which favours intermediate times."""
    n = mean + std * torch.randn(batch, generator=generator, dtype=torch.float64)
    t = torch.sigmoid(n)
    return t.clamp(path.t_min, path.t_max)


def edm_lognormal_sigma(batch: int, generator: torch.Generator, path: NoisePath,
                        p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """EDM's ``ln(sigma) ~ N(P_mean, P_std^2)`` (Karras et al. 2022, Table 1); for the EDM path ``t = sigma``."""
    n = p_mean + p_std * torch.randn(batch, generator=generator, dtype=torch.float64)
    return path.t_from_sigma_hat(torch.exp(n))
