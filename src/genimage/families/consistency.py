"""Consistency models (Song et al. 2023, "Consistency Models"; Song & Dhariwal 2023,
"Improved Techniques for Training Consistency Models" = iCT).

A consistency function maps every point of a probability-flow trajectory to its origin. On
the linear path ``x_t = (1 - t) x0 + t eps`` we parameterise it with a velocity network as
``f(x, t) = x - t v(x, t)``, which satisfies the boundary condition ``f(x, 0) = x`` exactly
(the role of ``c_skip``/``c_out`` in the paper's Eq. 5) and is precisely the ``x0``
prediction of a :class:`~genimage.models.denoiser.Denoiser` with velocity prediction, so a
trained model samples with the registered ``consistency`` sampler (1 or 2 steps) through the
same ``generate`` / CLI / pipeline as every diffusion model.

Two ways to train (``family_config["mode"]``):

* ``distillation`` (CD, paper Alg. 2): adjacent times ``t > s`` of a discretisation; the
  teacher takes one ODE step from ``x_t`` to ``x_s``; the loss pulls ``f(x_t, t)`` to the
  stop-gradient ``f(x_s, s)``. The student starts from the teacher's weights.
* ``training`` (CT, no teacher, Alg. 3 with iCT's choices): ``x_s`` is the same noise at the
  lower time; discretisation doubling every ``double_every`` steps from 10 to 640 intervals
  (iCT Eq. 8), times drawn from iCT's lognormal over noise levels (Eq. 10).

Both use iCT's pseudo-Huber distance ``sqrt(|a - b|^2 + c^2) - c``, ``c = 0.00054 sqrt(d)``
and weighting ``1 / (t - s)``, with the stop-gradient target of iCT (no separate EMA target).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import StepContext
from genimage.families.teacher import StudentModel
from genimage.models.config import ModelConfig
from genimage.objectives.denoising import drop_condition
from genimage.paths.conversions import PathCoefficients, noisy
from genimage.samplers.timesteps import karras

MODES = ("distillation", "training")


def discretisation(path, intervals: int) -> torch.Tensor:
    """``intervals + 1`` descending times from 1 to 0, Karras-spaced in ``sigma_hat``
    (``rho = 7``, ``sigma_hat`` in ``[0.002, 80]``), with the top replaced by exactly 1."""
    t = karras(path, intervals, sigma_min=0.002, sigma_max=80.0)
    t[0] = 1.0
    return t


def lognormal_index_probs(path, times: torch.Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> torch.Tensor:
    """iCT Eq. 10: probability of interval ``i`` (between ``times[i]`` and ``times[i+1]``)
    proportional to the lognormal mass of noise levels it spans."""
    sig = path.sigma_hat(times.clamp(max=1 - 1e-6)).clamp(min=1e-12).log()
    cdf = torch.special.erf((sig - p_mean) / (math.sqrt(2) * p_std))
    probs = (cdf[:-1] - cdf[1:]).clamp(min=0)
    return probs / probs.sum()


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``sqrt(|a - b|^2 + c^2) - c`` with ``c = 0.00054 sqrt(d)`` (iCT Sec. 3.3)."""
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d)
    return ((a - b).float().pow(2).flatten(1).sum(1) + c * c).sqrt() - c


class ConsistencyModel(StudentModel):
    """A consistency model on the linear path; see the module docstring."""

    family = "consistency"

    def __init__(self, config: ModelConfig) -> None:
        mode = config.family_config.get("mode", "distillation" if config.family_config.get("teacher") else "training")
        if mode not in MODES:
            raise GenimageError(f"consistency mode must be one of {MODES}, got {mode!r}")
        super().__init__(config)
        self.mode = mode

    def init_for_training(self) -> None:
        if self.mode == "distillation":  # CD starts from the teacher (Song et al. 2023, Sec. 6)
            self.init_from_teacher()

    def _intervals(self, step: int) -> int:
        fc = self.config.family_config
        if self.mode == "distillation":
            return int(fc.get("intervals", 18))
        s0, s1, every = int(fc.get("intervals_start", 10)), int(fc.get("intervals_end", 640)), int(fc.get("double_every", 2000))
        return min(s0 * 2 ** (step // every), s1)

    def consistency(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        """``f(x, t) = x - t v(x, t)``."""
        return self.denoiser(x, t, cond).x0

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x0 = batch["image"]
        b, dev, gen = x0.shape[0], x0.device, ctx.generator
        times = discretisation(self.denoiser.path, self._intervals(ctx.step))
        if self.mode == "training":
            probs = lognormal_index_probs(self.denoiser.path, times)
            idx = torch.multinomial(probs, b, replacement=True, generator=gen)
        else:
            idx = torch.randint(0, len(times) - 1, (b,), generator=gen)
        t, s = times[idx], times[idx + 1]
        eps = torch.randn(x0.shape, generator=gen).to(dev, x0.dtype)
        cond = drop_condition(batch.get("cond"), ctx.cond_drop_prob, gen)
        path = self.denoiser.path
        x_t = noisy(x0, eps, PathCoefficients.at(path, t, x0.ndim))
        if self.mode == "distillation":
            x_s = self.teacher.step(x_t, t, s, cond)
        else:
            x_s = noisy(x0, eps, PathCoefficients.at(path, s, x0.ndim))
        with torch.no_grad():
            target = self.consistency(x_s, s, cond)
        with ctx.autocast():
            out = self.consistency(x_t, t, cond)
        weight = (1.0 / (t - s)).to(dev, torch.float32)
        loss = (weight * pseudo_huber(out, target)).mean() / weight.mean()
        return {"loss": self.update(loss, ctx), "intervals": float(len(times) - 1)}


register_family(FamilySpec(
    name="consistency",
    model_cls=ConsistencyModel,
    presets={},  # architecture: the teacher's (distillation) or the diffusion backbone presets (training)
    description="consistency models: distillation from a flow-matching teacher (--teacher) or training without one; 1-2 step sampling",
    train_defaults={"lr": 1e-4, "ema_decay": 0.999, "warmup_steps": 0},
    conditioning=("label", "text", "none"),
))
