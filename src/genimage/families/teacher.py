"""Teachers for distillation: a trained flow-matching model that student families
(consistency distillation, reflow, one-step distillation) query during training.

A teacher is loaded lazily (only training needs it; a saved student samples on its own) and
must live on the linear path with velocity (or any) prediction, because students work in the
same time variable ``t`` in ``[0, 1]`` with ``x_t = (1 - t) x0 + t eps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genimage.conditioning.cfg import CFGDenoiser
from genimage.errors import GenimageError
from genimage.families.diffusion import DiffusionModel
from genimage.models.config import ModelConfig

#: One-step solvers :meth:`Teacher.step` takes (``family_config["teacher_solver"]``).
TEACHER_SOLVERS = ("euler", "heun")


@dataclass
class Teacher:
    """Args:
        model: The teacher denoiser wrapped for classifier-free guidance.
        config: The teacher's config.
        sampler: Sampler used to integrate the teacher's ODE.
        steps: Teacher ODE steps.
    """

    model: CFGDenoiser
    config: ModelConfig
    sampler: str
    steps: int

    @torch.no_grad()
    def solve(self, noise: torch.Tensor, cond) -> torch.Tensor:
        """Integrate the teacher ODE from ``noise`` at ``t = 1`` to a sample (deterministic)."""
        from genimage.samplers import SAMPLERS, make_schedule

        times = make_schedule("uniform", self.model.path, self.steps)
        return SAMPLERS.get(self.sampler)(self.model, noise, times, cond=cond).float()

    @torch.no_grad()
    def step(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond, solver: str = "euler") -> torch.Tensor:
        """One deterministic step of the teacher ODE from times ``t`` to ``s`` (``(B,)`` each) on
        the linear path.

        ``euler``: the DDIM/Euler step ``x_s = (1 - s) x0_hat + s eps_hat`` (one evaluation).
        ``heun``: Heun's second-order step (Karras et al. 2022, Alg. 1; the CD teacher of Song
        et al. 2023, Sec. 6), ``x_s = x_t + (s - t) (v(x_t, t) + v(x_euler, s)) / 2`` with the
        velocity ``v = eps_hat - x0_hat``; two evaluations, Euler where ``s = 0``."""
        from genimage.paths.conversions import PathCoefficients, noisy

        if solver not in TEACHER_SOLVERS:
            raise GenimageError(f"teacher_solver must be one of {TEACHER_SOLVERS}, got {solver!r}")
        pred = self.model(x, t, cond)
        x_euler = noisy(pred.x0.to(x.dtype), pred.eps, PathCoefficients.at(self.model.path, s, x.ndim))
        if solver == "euler":
            return x_euler
        shape = (-1,) + (1,) * (x.ndim - 1)
        late = self.model(x_euler, s.clamp(min=1e-4), cond)  # s = 0 rows are discarded below
        v = (pred.eps - pred.x0).double() + (late.eps - late.x0).double()
        dt = (s - t).to(torch.float64).reshape(shape).to(x.device)
        x_heun = (x.double() + dt * v / 2).to(x.dtype)
        return torch.where((s > 0).reshape(shape).to(x.device), x_heun, x_euler)

    def walk(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond, solver: str = "euler",
             substeps: int = 1) -> torch.Tensor:
        """From times ``t`` to ``s`` (``(B,)`` each) in ``substeps`` equal steps of :meth:`step`:
        a more accurate teacher solution over one interval of a coarse grid."""
        t64, s64 = t.to(torch.float64), s.to(torch.float64)
        for j in range(substeps):
            a = t64 + (s64 - t64) * (j / substeps)
            b = s64 if j == substeps - 1 else t64 + (s64 - t64) * ((j + 1) / substeps)
            x = self.step(x, a, b, cond, solver)
        return x

    def walk_grid(self, x: torch.Tensor, times: torch.Tensor, cond, solver: str = "euler",
                  substeps: int = 1) -> torch.Tensor:
        """Down the descending 1-D grid ``times``, :meth:`walk` ing each interval: the teacher's
        solution on a distillation grid, which bounds what a student distilled on it can reach."""
        for t, s in zip(times[:-1], times[1:]):
            x = self.walk(x, t.expand(len(x)), s.expand(len(x)), cond, solver, substeps)
        return x


class StudentModel(DiffusionModel):
    """A flow-matching network trained against a teacher (``family_config["teacher"]``):
    the teacher is loaded on first use, and a fresh run starts from the teacher's weights."""

    def __init__(self, config: ModelConfig) -> None:
        if config.path != "linear":
            raise GenimageError(f"{config.family} models live on the linear path; got path {config.path!r}")
        super().__init__(config)
        self._teacher: Teacher | None = None

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            self._teacher = load_teacher(self.config, self.device)
        return self._teacher

    def init_from_teacher(self) -> None:
        from genimage.models.io import load_model

        self.network.load_state_dict(load_model(self.config.family_config["teacher"]).denoiser.network.state_dict())


def load_teacher(config: ModelConfig, device: torch.device) -> Teacher:
    """The teacher named by ``config.family_config["teacher"]`` on ``device``."""
    from genimage.models.io import load_model

    fc = config.family_config
    name = fc.get("teacher")
    if not name:
        raise GenimageError(f"--family {config.family} needs --teacher MODEL (a trained flow-matching model)")
    loaded = load_model(name)
    tc = loaded.config
    if tc.path != "linear":
        raise GenimageError(f"teacher {name!r} uses the {tc.path!r} path; distillation here needs a flow-matching "
                            f"or rectified-flow teacher (linear path)")
    if (tc.num_classes, bool(tc.text_encoder)) != (config.num_classes, bool(config.text_encoder)):
        raise GenimageError(f"teacher {name!r} is conditioned differently from the student "
                            f"(classes {tc.num_classes} vs {config.num_classes}; text {tc.text_encoder} vs {config.text_encoder})")
    guidance = float(fc.get("teacher_guidance", tc.guidance))
    model = CFGDenoiser(loaded.denoiser.to(device), guidance)
    return Teacher(model, tc, fc.get("teacher_sampler", tc.sampler), int(fc.get("teacher_steps", tc.steps)))


def student_config_from_teacher(name: str, family: str, family_config: dict, **overrides) -> ModelConfig:
    """A student config with the teacher's architecture, conditioning and geometry."""
    import dataclasses

    from genimage.models.io import resolve_model_folder

    teacher = ModelConfig.load(resolve_model_folder(name))
    if teacher.family != "diffusion" and teacher.family != "reflow":
        raise GenimageError(f"teacher {name!r} is a {teacher.family} model; use a flow-matching model")
    return dataclasses.replace(teacher, family=family, family_config={"teacher": str(name), **family_config},
                               training={"teacher": str(name)}, **overrides)
