"""The variance-exploding path of EDM (Karras et al. 2022, Table 1, "Ours"):
``alpha(t) = 1``, ``sigma(t) = t``; time *is* the noise level.

``c_noise = 250 * ln(sigma)`` is EDM's ``ln(sigma) / 4`` scaled by 1000 so that all paths
feed the backbone numbers of a similar range.
"""

from __future__ import annotations

import torch

from genimage.paths.base import PATHS, NoisePath, as_time


@PATHS.register("edm")
class EDMPath(NoisePath):
    name = "edm"
    t_min = 0.002
    t_max = 80.0
    sigma_hat_max_schedule = 80.0

    def alpha(self, t):
        return torch.ones_like(as_time(t))

    def sigma(self, t):
        return as_time(t).clone()

    def d_alpha(self, t):
        return torch.zeros_like(as_time(t))

    def d_sigma(self, t):
        return torch.ones_like(as_time(t))

    def t_from_sigma_hat(self, sigma_hat):
        return as_time(sigma_hat).clone()

    def c_noise(self, t):
        return 250.0 * torch.log(as_time(t).clamp_min(1e-20))
