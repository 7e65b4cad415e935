"""Variance-preserving paths: ``alpha(t)^2 + sigma(t)^2 = 1``.

* :class:`VPCosine` — the cosine schedule of Nichol & Dhariwal (2021, Eq. 17) without the
  small offset, in continuous time: ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``.
* :class:`VPLinear` — DDPM's linear beta schedule (Ho et al. 2020) in the continuous form of
  Song et al. (2021, VP-SDE, Eq. 33): ``log alpha(t) = -t^2 (b1 - b0) / 4 - t b0 / 2``
  with ``b0 = 0.1``, ``b1 = 20``.
"""

from __future__ import annotations

import math

import torch

from genimage.paths.base import PATHS, NoisePath, as_time


@PATHS.register("vp-cosine")
class VPCosine(NoisePath):
    name = "vp-cosine"
    t_min = 1e-3
    # alpha(t_max) ~ 1.6e-3: eps-prediction stays invertible at the start of sampling.
    t_max = 0.999
    sigma_hat_max_schedule = 80.0

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * as_time(t))

    def sigma(self, t):
        return torch.sin(0.5 * math.pi * as_time(t))

    def d_alpha(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * as_time(t))

    def d_sigma(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * as_time(t))

    def t_from_sigma_hat(self, sigma_hat):
        return torch.atan(as_time(sigma_hat)) * (2.0 / math.pi)


@PATHS.register("vp-linear")
class VPLinear(NoisePath):
    name = "vp-linear"
    beta_0 = 0.1
    beta_1 = 20.0
    t_min = 1e-3
    t_max = 1.0
    sigma_hat_max_schedule = 80.0

    def _log_alpha(self, t):
        t = as_time(t)
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def d_alpha(self, t):
        t = as_time(t)
        return self.alpha(t) * (-0.5 * t * (self.beta_1 - self.beta_0) - 0.5 * self.beta_0)

    def d_sigma(self, t):
        t = as_time(t)
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def t_from_sigma_hat(self, sigma_hat):
        # sigma_hat^2 = 1/alpha^2 - 1  =>  log alpha = -log(1 + sigma_hat^2) / 2; solve the quadratic.
        log_alpha = -0.5 * torch.log1p(as_time(sigma_hat) ** 2)
        a = 0.25 * (self.beta_1 - self.beta_0)
        b = 0.5 * self.beta_0
        return (-b + torch.sqrt(b * b - 4 * a * log_alpha)) / (2 * a)

    def c_noise(self, t):
        return 999.0 * as_time(t)
