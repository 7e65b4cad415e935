"""The linear path of flow matching / rectified flow:
``x_t = (1 - t) x0 + t eps`` (Lipman et al. 2023, Eq. 20 with sigma_min = 0;
Liu et al. 2023, Eq. 1). Its velocity is ``eps - x0``.
"""

from __future__ import annotations

import torch

from genimage.paths.base import PATHS, NoisePath, as_time


@PATHS.register("linear")
class LinearPath(NoisePath):
    name = "linear"
    t_min = 0.0
    t_max = 1.0
    # sigma_hat(1) is infinite; a Karras schedule starts at t = 80 / 81 instead.
    sigma_hat_max_schedule = 80.0

    def alpha(self, t):
        return 1.0 - as_time(t)

    def sigma(self, t):
        return as_time(t).clone()

    def d_alpha(self, t):
        return -torch.ones_like(as_time(t))

    def d_sigma(self, t):
        return torch.ones_like(as_time(t))

    def t_from_sigma_hat(self, sigma_hat):
        s = as_time(sigma_hat)
        return s / (1.0 + s)
