"""Closed-form data distributions and exact denoisers for sampler tests.

For data ``x0`` drawn from a Gaussian (or a mixture of Gaussians) and a path
``x_t = alpha x0 + sigma eps``, the marginal of ``x_t`` and the posterior mean
``E[x0 | x_t]`` are closed form, so the "network" of a sampler test can be exact and any
error left is the sampler's own (the analytic-case testing of torchcfm / flow_matching).

Everything is elementwise: a tensor of any shape ``(B, ...)`` is a batch of independent
scalar samples, which makes the exact denoiser batch-invariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from genimage.models.denoiser import Prediction
from genimage.paths.base import NoisePath
from genimage.paths.conversions import PathCoefficients, edm_scalings, from_x0_eps


def _coef(path: NoisePath, t) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.as_tensor(t, dtype=torch.float64)
    return path.alpha(t), path.sigma(t)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a scalar or ``(B,)`` coefficient to broadcast against ``x`` ``(B, ...)``."""
    return v if v.ndim == 0 else v.reshape((-1,) + (1,) * (x.ndim - 1))


@dataclass(frozen=True)
class Gaussian:
    """Scalar Gaussian data ``x0 ~ N(mu, s^2)`` (applied to every element independently)."""

    mu: float = 0.3
    s: float = 0.6

    def posterior_mean(self, path: NoisePath, x: torch.Tensor, t) -> torch.Tensor:
        """``E[x0 | x_t = x] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x - alpha mu)``."""
        a, sg = (_per_sample(v, x) for v in _coef(path, t))
        x = x.double()
        return self.mu + a * self.s**2 / (a**2 * self.s**2 + sg**2) * (x - a * self.mu)

    def marginal_std(self, path: NoisePath, t) -> torch.Tensor:
        a, sg = _coef(path, t)
        return torch.sqrt(a**2 * self.s**2 + sg**2)

    def initial(self, path: NoisePath, t, z: torch.Tensor) -> torch.Tensor:
        """``x_t`` with standardized value ``z``: ``alpha mu + sqrt(alpha^2 s^2 + sigma^2) z``."""
        a, _ = _coef(path, t)
        return a * self.mu + self.marginal_std(path, t) * z.double()

    def flow(self, path: NoisePath, x: torch.Tensor, t_from, t_to) -> torch.Tensor:
        """Exact probability-flow ODE map ``x_{t_from} -> x_{t_to}`` (preserves the z-score)."""
        a0, _ = _coef(path, t_from)
        z = (x.double() - a0 * self.mu) / self.marginal_std(path, t_from)
        return self.initial(path, t_to, z)

    def sampler_reference(self, path: NoisePath, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What a sampler with zero discretization error returns: the exact flow from
        ``timesteps[0]`` to the last noisy time ``timesteps[-2]``, then the exact denoiser
        (every sampler's last step to ``t = 0`` returns the denoised estimate)."""
        t_last = timesteps[-2]
        return self.posterior_mean(path, self.flow(path, x, timesteps[0], t_last), t_last)


@dataclass(frozen=True)
class GaussianMixture:
    """Scalar mixture ``sum_k w_k N(m_k, s_k^2)``."""

    weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    means: tuple[float, ...] = (-1.0, 0.6, 1.6)
    stds: tuple[float, ...] = (0.25, 0.2, 0.15)

    def _params(self):
        f = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return f(self.weights) / sum(self.weights), f(self.means), f(self.stds)

    def posterior_mean(self, path: NoisePath, x: torch.Tensor, t) -> torch.Tensor:
        """Responsibility-weighted sum of each component's Gaussian posterior mean."""
        w, m, s = self._params()
        a, sg = (_per_sample(v, x)[..., None] for v in _coef(path, t))
        xx = x.double()[..., None]
        var = a**2 * s**2 + sg**2
        log_r = torch.log(w) - 0.5 * (xx - a * m) ** 2 / var - 0.5 * torch.log(var)
        r = torch.softmax(log_r, dim=-1)
        comp = m + a * s**2 / var * (xx - a * m)
        return (r * comp).sum(-1)

    def mean(self) -> float:
        w, m, _ = self._params()
        return float((w * m).sum())

    def std(self) -> float:
        w, m, s = self._params()
        second = (w * (s**2 + m**2)).sum()
        return float(torch.sqrt(second - self.mean() ** 2))

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        w, m, s = self._params()
        z = (x.double()[..., None] - m) / s
        return (w * 0.5 * torch.erfc(-z / math.sqrt(2.0))).sum(-1)

    def marginal(self, path: NoisePath, t) -> "GaussianMixture":
        """The distribution of ``x_t``: components ``N(alpha m_k, alpha^2 s_k^2 + sigma^2)``."""
        a, sg = (float(v) for v in _coef(path, t))
        stds = tuple(math.sqrt(a**2 * s**2 + sg**2) for s in self.stds)
        return GaussianMixture(self.weights, tuple(a * m for m in self.means), stds)

    def quantile(self, u: torch.Tensor, iters: int = 100) -> torch.Tensor:
        """Inverse CDF by bisection."""
        _, m, s = self._params()
        lo = torch.full_like(u, float((m - 10 * s).min()), dtype=torch.float64)
        hi = torch.full_like(u, float((m + 10 * s).max()), dtype=torch.float64)
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = self.cdf(mid) < u
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def std_error_of_std(self, n: int) -> float:
        """Standard error of the sample std of ``n`` draws: ``sqrt(mu4 - var^2) / (2 std sqrt(n))``."""
        w, m, s = self._params()
        d = m - self.mean()
        mu4 = float((w * (d**4 + 6 * d**2 * s**2 + 3 * s**4)).sum())
        var = self.std() ** 2
        return math.sqrt((mu4 - var**2) / n) / (2 * math.sqrt(var))

    def sample_initial(self, path: NoisePath, t, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` exact draws of ``x_t`` (component, then ``alpha x0 + sigma eps``)."""
        w, m, s = self._params()
        a, sg = _coef(path, t)
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        x0 = m[k] + s[k] * torch.randn(n, generator=generator, dtype=torch.float64)
        return a * x0 + sg * torch.randn(n, generator=generator, dtype=torch.float64)

    def cell_masses(self) -> torch.Tensor:
        """True probability of being nearest to each mean (cells split at midpoints)."""
        _, m, _ = self._params()
        order = torch.argsort(m)
        cuts = (m[order][1:] + m[order][:-1]) / 2
        edges = torch.cat([torch.zeros(1, dtype=torch.float64), self.cdf(cuts), torch.ones(1, dtype=torch.float64)])
        masses = torch.empty_like(m)
        masses[order] = edges[1:] - edges[:-1]
        return masses

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        _, m, _ = self._params()
        return (x.double()[..., None] - m).abs().argmin(-1)


class AnalyticDenoiser(nn.Module):
    """The exact denoiser of ``data`` on ``path``, in the sampler model interface.

    ``model(x, t, cond) -> Prediction`` with ``eps = (x - alpha x0) / sigma``; ``cond`` is ignored.
    Counts calls in ``nfe``.
    """

    def __init__(self, path: NoisePath, data) -> None:
        super().__init__()
        self.path = path
        self.data = data
        self.nfe = 0

    def forward(self, x: torch.Tensor, t, cond=None) -> Prediction:
        self.nfe += 1
        t = torch.as_tensor(t, dtype=torch.float64)
        x0 = self.data.posterior_mean(self.path, x, t)
        a, sg = (_per_sample(v, x) for v in _coef(self.path, t))
        eps = (x.double() - a * x0) / sg
        return Prediction(x0.to(x.dtype), eps.to(x.dtype))


_C_NOISE_INVERSES: dict[tuple[str, float], float] = {}


def invert_c_noise(path: NoisePath, c_noise: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """Path time with ``path.c_noise(t) = c_noise`` (monotone in ``t``), by bisection on
    ``[0, t_max]`` per distinct value, memoized (samplers reuse the same few times)."""
    out = torch.empty(c_noise.shape, dtype=torch.float64)
    for value in c_noise.unique().tolist():
        key = (path.name, value)
        if key not in _C_NOISE_INVERSES:
            lo, hi = 0.0, float(path.t_max)
            for _ in range(iters):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if float(path.c_noise(mid)) < value else (lo, mid)
            _C_NOISE_INVERSES[key] = (lo + hi) / 2
        out[c_noise == value] = _C_NOISE_INVERSES[key]
    return out


class OracleBackbone(nn.Module):
    """A backbone ``(x_in, c_noise, cond) -> raw`` that outputs the exact target of its
    prediction type for ``data``: it recovers ``t`` from ``c_noise``, undoes the
    denoiser's input scaling (EDM's ``c_in``), and returns ``from_x0_eps(kind, E[x0|x], E[eps|x])``.
    """

    def __init__(self, path: NoisePath, prediction: str, data, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.path, self.prediction, self.data, self.sigma_data = path, prediction, data, sigma_data

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        t = invert_c_noise(self.path, c_noise)
        c = PathCoefficients.at(self.path, t, x_in.ndim)
        x = x_in.double()
        if self.prediction == "edm":
            x = x * c.alpha / edm_scalings(c, self.sigma_data)[2]
        x0 = self.data.posterior_mean(self.path, x, t)
        eps = (x - c.alpha * x0) / c.sigma
        return from_x0_eps(self.prediction, x0, eps, c, self.sigma_data).to(x_in.dtype)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov–Smirnov distance between the empirical distribution of ``samples`` and ``cdf``."""
    x, _ = samples.double().flatten().sort()
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())
