"""Consistency models (Song et al. 2023, "Consistency Models"; Song & Dhariwal 2023,
"Improved Techniques for Training Consistency Models" = iCT; Geng et al. 2024, "Consistency
Models Made Easy" = ECT).

A consistency function maps every point of a probability-flow trajectory to its origin. On
the linear path ``x_t = (1 - t) x0 + t eps`` we parameterise it with a velocity network as
``f(x, t) = x - t v(x, t)``, which satisfies the boundary condition ``f(x, 0) = x`` exactly
(the role of ``c_skip``/``c_out`` in the paper's Eq. 5) and is precisely the ``x0``
prediction of a :class:`~genimage.models.denoiser.Denoiser` with velocity prediction, so a
trained model samples with the registered ``consistency`` sampler (1 or 2 steps) through the
same ``generate`` / CLI / pipeline as every diffusion model.

Two ways to train (``family_config["mode"]``):

* ``distillation`` (CD, paper Alg. 2): adjacent times ``t > s`` of a discretisation; the
  teacher takes one ODE step from ``x_t`` to ``x_s`` (``teacher_solver``: ``euler``, the
  default, or the paper's ``heun``); the loss pulls ``f(x_t, t)`` to the
  stop-gradient ``f(x_s, s)``. The student starts from the teacher's weights. The grid has
  ``intervals`` (18) intervals, Karras-spaced (``grid = karras``, the paper's) or equally
  spaced in path time (``grid = uniform``): the student learns the teacher's solution *on
  the grid*, so the grid's accuracy bounds the student's (on digits, n = 5,000: the teacher
  walking 18 Karras intervals reaches FD 1.91, 18 uniform ones 1.33, its 50-step DDIM 1.385;
  ``benchmarks/distillation_grid_ceiling.py``). ``teacher_substeps = k`` makes the teacher
  step of each interval ``k`` equal solver steps: the teacher's accuracy of a ``k`` times
  finer grid with the student's chain of consistency links as short as the coarse grid's
  (with one interval per segment, ``intervals = segments``, there is no chain left: each
  segment's jump regresses onto the teacher's ``k``-step solution, the direct distillation of
  Luhman & Luhman 2021 per segment). The stop-gradient targets pass each link's error on to
  the next: on digits (2 segments, the teacher's points of the uniform 18-interval grid,
  n = 5,000) a student fine-tuned with 9 links per segment samples at FD 1.78 in 2 steps,
  with 3 links (``intervals=6, teacher_substeps=3``) 1.66, with 1 link 1.61 (teacher DDIM-50:
  1.385; ``benchmarks/consistency_segment_errors.py`` shows the low-noise segment holds the gap).
* ``training`` (CT, no teacher, Alg. 3): ``x_s`` is the same noise at the lower time. The
  pairs ``t > s`` come from ``family_config["schedule"]``:

  - ``ect`` (default): continuous ``t`` (noise level ``sigma`` lognormal), ``s`` from ECT's
    mapping ``r = t (1 - n(t) / 2^a)`` (Sec. 3.2): stage ``a = 0`` is plain denoising (target
    = the clean image), each later stage halves ``t - s``. A stage lasts ``double_every``
    steps; there are ``log2(intervals_end / intervals_start)`` halvings.
  - ``ict``: a Karras discretisation doubling every ``double_every`` steps from
    ``intervals_start`` (10) to ``intervals_end`` (640) intervals (iCT Eq. 8), interval index
    drawn from iCT's lognormal over noise levels (Eq. 10).

  ``total_steps`` (instead of ``double_every``) spreads the stages evenly over a run (iCT's
  ``K' = K / (log2(s1 / s0) + 1)``).

Multistep consistency (Heek, Hoogeboom & Salimans 2024, "Multistep Consistency Models"):
``family_config["segments"] = S`` splits path time into ``S`` equal segments
``(k / S, (k + 1) / S]``; within a segment the consistency function maps a point to the
segment's *start* ``b`` instead of to 0, by a DDIM step with the network's ``x0`` estimate,
``f_S(x_t, t) = ((t - b) / t) x0_hat + (b / t) x_t`` (identity at ``t = b``, so every boundary
condition holds exactly). Sampling is then deterministic: ``S`` DDIM steps on the segment
boundaries (the ``ddim`` sampler on the uniform ``S``-step schedule, no re-noising). ``S = 1``
is the classic model above. Training pulls ``f_S(x_t, t)`` to the stop-gradient
``f_S(x_s, s)`` (``s`` clamped at ``b``), compared in ``x0`` space by inverting the DDIM step
(the paper's Alg. 1: ``x0_ref = (t x_b - b x_t) / (t - b)``), so the loss is the single-segment
loss when ``S = 1``.

Both use iCT's pseudo-Huber distance ``sqrt(|a - b|^2 + c^2) - c``, ``c = 0.00054 sqrt(d)``,
with the stop-gradient target of iCT (no separate EMA target). ``weighting`` is ``1 / (t - s)``
in path time (``t``, the default of ``ict`` and distillation), ``1 / (sigma_t - sigma_s)``
(``sigma``, iCT's) or 1 (``uniform``, the default of ``ect``): with ``1 / (t - s)`` ECT's
denoising stage (``s = 0``) spends almost all weight on tiny ``t`` and the class-deciding
high-noise region barely trains (digits, DiT, iCT's lognormal: samples ignored their labels and
none was recognized after 1,250 steps; see BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import StepContext
from genimage.families.teacher import TEACHER_SOLVERS, StudentModel
from genimage.models.config import ModelConfig
from genimage.objectives.denoising import drop_condition
from genimage.paths.conversions import PathCoefficients, noisy
from genimage.samplers.timesteps import karras

MODES = ("distillation", "training")
SCHEDULES = ("ict", "ect")
WEIGHTINGS = ("t", "sigma", "uniform")
GRIDS = ("karras", "uniform")
# per-schedule defaults of the training settings (distillation uses the ``ict`` ones)
SCHEDULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "ict": {"weighting": "t", "p_mean": -1.1, "p_std": 2.0},  # iCT Sec. 3.5
    # ECT's mapping with a lognormal centred on sigma = 1 (t = 0.5) and a uniform weighting:
    # measured on digits (BENCHMARKS.md), not the papers' CIFAR settings (p_mean -1.1, p_std 2)
    "ect": {"weighting": "uniform", "p_mean": 0.0, "p_std": 1.5},
}


def discretisation(path, intervals: int, grid: str = "karras") -> torch.Tensor:
    """``intervals + 1`` descending times from 1 to 0: ``karras`` = Karras-spaced in
    ``sigma_hat`` (``rho = 7``, ``sigma_hat`` in ``[0.002, 80]``, the top replaced by exactly
    1; CD/iCT's grid), ``uniform`` = equally spaced in path time (DDIM's spacing; on the linear
    path the Karras grid puts most of its steps at tiny noise, and the digits teacher walking
    18 uniform intervals is far more accurate than walking 18 Karras ones: FD 1.33 vs 1.91)."""
    if grid == "uniform":
        return torch.linspace(1.0, 0.0, intervals + 1, dtype=torch.float64)
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


def ict_double_every(total_steps: int, start: int, end: int) -> int:
    """iCT Eq. 8's stage length ``K' = floor(K / (log2(s1 / s0) + 1))`` for ``K`` total steps:
    the discretisation doubles ``log2(s1 / s0)`` times, evenly over the run."""
    return max(1, int(total_steps // (math.floor(math.log2(end / start)) + 1)))


def ect_pair_sigmas(sigma: torch.Tensor, stage: int, k: float = 8.0, b: float = 1.0, q: float = 2.0) -> torch.Tensor:
    """ECT's mapping ``r = t (1 - n(t) / q^a)``, ``n(t) = 1 + k sigmoid(-b t)``, clamped at 0
    (Geng et al. 2024, "Consistency Models Made Easy", Sec. 3.2), in VE noise levels ``sigma``.

    Stage ``a = 0`` gives ``r = 0`` everywhere: the target is the clean image, i.e. plain
    denoising; every later stage halves the gap ``t - r`` (with ``q = 2``) towards the
    consistency condition between neighbouring noise levels."""
    n = 1.0 + k * torch.sigmoid(-b * sigma)
    return (sigma * (1.0 - n / q**stage)).clamp(min=0.0)


@dataclass(frozen=True)
class ConsistencySettings:
    """The training settings of ``family_config`` with their defaults filled in (see the
    module docstring); built by :func:`consistency_settings`."""

    mode: str
    schedule: str
    weighting: str
    intervals_start: int
    intervals_end: int
    double_every: int
    p_mean: float
    p_std: float
    segments: int = 1
    teacher_solver: str = "euler"
    grid: str = "karras"
    teacher_substeps: int = 1

    def segment_start(self, t: torch.Tensor) -> torch.Tensor:
        """Start ``b = ceil(S t - 1) / S`` (>= 0) of the segment ``(b, b + 1/S]`` holding each
        time ``t`` (float64 ``(B,)``); a time on a boundary belongs to the segment below it."""
        s = self.segments
        return (torch.ceil(t * s - 1 - 1e-9).clamp(min=0) / s).to(torch.float64)

    def intervals(self, step: int) -> int:
        """iCT's discretisation size at ``step``: ``min(s0 * 2^floor(step / K'), s1)`` intervals."""
        return min(self.intervals_start * 2 ** (step // self.double_every), self.intervals_end)

    def ect_stage(self, step: int) -> int:
        """ECT's stage ``a`` at ``step``: one halving of ``t - s`` per ``double_every`` steps, at
        most ``log2(intervals_end / intervals_start)`` of them."""
        return min(step // self.double_every, math.floor(math.log2(self.intervals_end / self.intervals_start)))


def consistency_settings(family_config: dict[str, Any]) -> ConsistencySettings:
    """Validate ``family_config`` and fill in the defaults (those of ``ect`` for training from
    scratch, of ``ict`` for distillation); raises :class:`GenimageError` on bad values."""
    fc = family_config
    mode = fc.get("mode", "distillation" if fc.get("teacher") else "training")
    if mode not in MODES:
        raise GenimageError(f"consistency mode must be one of {MODES}, got {mode!r}")
    schedule = fc.get("schedule", "ect" if mode == "training" else "ict")
    if schedule not in SCHEDULES:
        raise GenimageError(f"consistency schedule must be one of {SCHEDULES}, got {schedule!r}")
    defaults = SCHEDULE_DEFAULTS[schedule if mode == "training" else "ict"]
    weighting = fc.get("weighting", defaults["weighting"])
    if weighting not in WEIGHTINGS:
        raise GenimageError(f"consistency weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    try:
        start, end = int(fc.get("intervals_start", 10)), int(fc.get("intervals_end", 640))
        p_mean, p_std = float(fc.get("p_mean", defaults["p_mean"])), float(fc.get("p_std", defaults["p_std"]))
        total = int(fc.get("total_steps") or 0)
        every = int(fc.get("double_every", 2000))
        segments = int(fc.get("segments", 1))
        substeps = int(fc.get("teacher_substeps", 1))
    except (TypeError, ValueError) as exc:
        raise GenimageError(f"consistency settings must be numbers: {exc}") from None
    if not 1 <= start <= end:
        raise GenimageError(f"consistency needs 1 <= intervals_start <= intervals_end, got {start} and {end}")
    if not p_std > 0:
        raise GenimageError(f"consistency p_std must be positive, got {p_std}")
    if total < 0 or every < 1:
        raise GenimageError(f"consistency needs total_steps >= 0 and double_every >= 1, got {total} and {every}")
    if segments < 1:
        raise GenimageError(f"consistency segments must be >= 1 (1 = the classic model), got {segments}")
    if substeps < 1:
        raise GenimageError(f"consistency teacher_substeps must be >= 1, got {substeps}")
    if substeps > 1 and mode != "distillation":
        raise GenimageError("consistency teacher_substeps is for distillation from a --teacher; training without "
                            "one has no teacher steps")
    solver = fc.get("teacher_solver", "euler")
    if solver not in TEACHER_SOLVERS:
        raise GenimageError(f"consistency teacher_solver must be one of {TEACHER_SOLVERS}, got {solver!r}")
    grid = fc.get("grid", "karras")
    if grid not in GRIDS:
        raise GenimageError(f"consistency grid must be one of {GRIDS}, got {grid!r}")
    if total:
        every = ict_double_every(total, start, end)
    return ConsistencySettings(mode, schedule, weighting, start, end, every, p_mean, p_std, segments, solver, grid,
                               substeps)


def with_boundaries(times: torch.Tensor, segments: int, min_gap: float = 1e-3) -> torch.Tensor:
    """Descending ``times`` with the segment boundaries ``k / S`` inserted (grid points within
    ``min_gap`` of a boundary give way to it), so every interval lies inside one segment."""
    if segments == 1:
        return times
    bounds = torch.arange(1, segments, dtype=times.dtype) / segments
    keep = (times[:, None] - bounds[None, :]).abs().min(dim=1).values >= min_gap
    return torch.cat([times[keep], bounds]).sort(descending=True).values


def boundary_x0_target(x_t: torch.Tensor, t: torch.Tensor, x_s: torch.Tensor, s: torch.Tensor,
                       x0_s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The ``x0`` target of multistep consistency (Heek et al. 2024, Alg. 1) on the linear path.

    The target's estimate ``x0_s`` at ``(x_s, s)`` is carried by a DDIM step to the segment
    start ``b``: ``x_b = ((s - b) / s) x0_s + (b / s) x_s``; the ``x0`` that takes ``x_t`` to
    ``x_b`` by a DDIM step is ``(t x_b - b x_t) / (t - b)``. With ``b = 0`` both reduce to
    ``x0_s`` (the classic target). Times are ``(B,)``; requires ``t > s >= b``."""
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    t, s, b = (u.to(torch.float64).reshape(shape).to(x_t.device) for u in (t, s, b))
    start = b > 0
    s_safe = torch.where(start, s, torch.ones_like(s))
    x_b = torch.where(start, ((s - b) / s_safe) * x0_s.double() + (b / s_safe) * x_s.double(), x0_s.double())
    return torch.where(start, (t * x_b - b * x_t.double()) / (t - b), x_b).to(x0_s.dtype)


class ConsistencyModel(StudentModel):
    """A consistency model on the linear path; see the module docstring."""

    family = "consistency"

    def __init__(self, config: ModelConfig) -> None:
        settings = consistency_settings(config.family_config)
        super().__init__(config)
        self.settings = settings
        self.mode = settings.mode

    def init_for_training(self) -> None:
        if self.mode == "distillation":  # CD starts from the teacher (Song et al. 2023, Sec. 6)
            self.init_from_teacher()

    def _intervals(self, step: int) -> int:
        if self.mode == "distillation":
            return int(self.config.family_config.get("intervals", 18))
        return self.settings.intervals(step)

    def consistency(self, x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        """``f(x, t) = x - t v(x, t)``: the ``x0`` estimate (with several segments, the point
        at the segment start is a DDIM step with it; see :func:`boundary_x0_target`)."""
        return self.denoiser(x, t, cond).x0

    def _times(self, b: int, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Per-sample times ``t > s`` (float64 ``(B,)``) and metrics describing the discretisation."""
        path = self.denoiser.path
        cfg = self.settings
        if self.mode == "training" and cfg.schedule == "ect":
            sigma = (cfg.p_mean + cfg.p_std * torch.randn(b, generator=gen, dtype=torch.float64)).exp()
            stage = cfg.ect_stage(step)
            r = ect_pair_sigmas(sigma, stage)
            t, s = path.t_from_sigma_hat(sigma), path.t_from_sigma_hat(r)
            if cfg.segments > 1:  # s no lower than the segment start, and t - s > 0 whatever rounding did
                s = torch.minimum(torch.maximum(s, cfg.segment_start(t)), t * (1 - 1e-6))
            return t, s, {"stage": float(stage)}
        times = with_boundaries(discretisation(path, self._intervals(step), cfg.grid), cfg.segments)
        if self.mode == "training":
            probs = lognormal_index_probs(path, times, cfg.p_mean, cfg.p_std)
            idx = torch.multinomial(probs, b, replacement=True, generator=gen)
        else:
            idx = torch.randint(0, len(times) - 1, (b,), generator=gen)
        return times[idx], times[idx + 1], {"intervals": float(len(times) - 1)}

    def _weight(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``1 / (t - s)`` in path time (``"t"``), iCT's ``1 / (sigma_t - sigma_s)`` in VE noise
        levels (``"sigma"``; ``sigma`` capped at 80, the top of the discretisation, so ``t = 1``
        keeps a weight), or 1 (``"uniform"``: the time distribution alone sets the emphasis)."""
        if self.settings.weighting == "uniform":
            return torch.ones_like(t)
        if self.settings.weighting == "sigma":
            path = self.denoiser.path
            cap = lambda u: path.sigma_hat(u).clamp(max=80.0)  # noqa: E731
            return 1.0 / (cap(t) - cap(s)).clamp(min=1e-12)
        return 1.0 / (t - s)

    def grad_accumulation_problem(self) -> str | None:
        if self.settings.weighting != "uniform":
            return (f"the loss is normalised by its batch's mean {self.settings.weighting!r} weight, which differs "
                    "per micro-batch; use --set weighting=uniform or a larger --batch-size")
        return None

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x0 = batch["image"]
        b, dev, gen = x0.shape[0], x0.device, ctx.generator
        t, s, info = self._times(b, ctx.step, gen)
        eps = torch.randn(x0.shape, generator=gen).to(dev, x0.dtype)
        cond = drop_condition(batch.get("cond"), ctx.cond_drop_prob, gen)
        path = self.denoiser.path
        x_t = noisy(x0, eps, PathCoefficients.at(path, t, x0.ndim))
        if self.mode == "distillation":
            x_s = self.teacher.walk(x_t, t, s, cond, self.settings.teacher_solver, self.settings.teacher_substeps)
        else:
            x_s = noisy(x0, eps, PathCoefficients.at(path, s, x0.ndim))
        with torch.no_grad():
            target = self.consistency(x_s, s, cond)
            if self.settings.segments > 1:
                target = boundary_x0_target(x_t, t, x_s, s, target, self.settings.segment_start(t))
        with ctx.autocast():
            out = self.consistency(x_t, t, cond)
        weight = self._weight(t, s).to(dev, torch.float32)
        loss = (weight * pseudo_huber(out, target)).mean() / weight.mean()
        return {"loss": self.update(loss, ctx), **info}


# Recipes for consistency training from scratch (no teacher), by preset name. Each names the
# backbone and its preset (``genimage.models.presets``) plus overrides, the family settings and
# the trainer settings the recipe was measured with (BENCHMARKS.md, "Every family on digits").
CT_PRESETS: dict[str, dict[str, Any]] = {
    # 8x8 digits on one CPU thread: >= 0.9 recognized with 1 or 2 steps in under 10 minutes
    "ct-tiny": {
        "backbone": "unet",
        "backbone_preset": "tiny",
        "backbone_overrides": {},
        "family_config": {"mode": "training", "schedule": "ect", "double_every": 428},
        "train": {"steps": 3000, "lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.995, "cond_drop_prob": 0.0},
    },
}


def sampling_defaults(family_config: dict[str, Any]) -> dict[str, Any]:
    """How a consistency model with ``family_config`` samples by default: the 2-step
    consistency sampler (Song et al. 2023, Alg. 1), or with ``S > 1`` segments ``S``
    deterministic DDIM steps on the segment boundaries (Heek et al. 2024)."""
    segments = consistency_settings(family_config).segments
    if segments > 1:
        return dict(sampler="ddim", schedule="uniform", steps=segments, guidance=1.0)
    return dict(sampler="consistency", schedule="uniform", steps=2, guidance=1.0)


def as_training_config(config: ModelConfig, family_config: dict[str, Any] | None = None) -> ModelConfig:
    """``config`` (any diffusion backbone) set up for consistency training from scratch: the
    linear path with a velocity network, ``family_config`` as training-mode settings, and
    :func:`sampling_defaults` (checks the settings)."""
    fc = {"mode": "training", **(family_config or {})}
    return dataclasses.replace(config, family="consistency", objective="consistency-training", path="linear",
                               prediction="velocity", family_config=fc, **sampling_defaults(fc))


def _ct_recipe(name: str) -> dict[str, Any]:
    if name not in CT_PRESETS:
        raise GenimageError(f"unknown consistency preset {name!r}; choose one of: {', '.join(CT_PRESETS)}")
    return CT_PRESETS[name]


def ct_preset_model_config(name: str, *, image_size: int, channels: int, num_classes: int = 0,
                           class_names: list[str] | None = None, overrides: dict[str, Any] | None = None,
                           family_config: dict[str, Any] | None = None, **fields: Any) -> ModelConfig:
    """The :class:`ModelConfig` of CT preset ``name`` for data of this geometry; ``overrides``
    change the backbone config, ``family_config`` the family settings, ``fields`` other
    ``ModelConfig`` fields (e.g. ``training``)."""
    from genimage.models.presets import backbone_config

    recipe = _ct_recipe(name)
    bcfg = backbone_config(recipe["backbone"], recipe["backbone_preset"], image_size=image_size, channels=channels,
                           num_classes=num_classes, overrides={**recipe["backbone_overrides"], **(overrides or {})})
    base = ModelConfig(backbone=recipe["backbone"], backbone_config=bcfg, objective="", path="", prediction="",
                       image_size=image_size, channels=channels, num_classes=num_classes, class_names=class_names,
                       **fields)
    return as_training_config(base, {**recipe["family_config"], **(family_config or {})})


def ct_preset_train_settings(name: str) -> dict[str, Any]:
    """The :class:`~genimage.training.loop.TrainConfig` fields CT preset ``name`` was measured with."""
    return dict(_ct_recipe(name)["train"])


register_family(FamilySpec(
    name="consistency",
    model_cls=ConsistencyModel,
    # distillation keeps the teacher's architecture; training from scratch takes a CT recipe
    # (CT_PRESETS) or any diffusion backbone preset (--backbone/--preset)
    presets=CT_PRESETS,
    description="consistency models: distillation from a flow-matching teacher (--teacher) or training without one; 1-2 step sampling",
    train_defaults={"lr": 1e-4, "ema_decay": 0.999, "warmup_steps": 0},
    conditioning=("label", "text", "none"),
))
