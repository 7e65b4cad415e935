"""A variance-preserving path through a diffusers scheduler's discrete ``alphas_cumprod``.

Stable Diffusion (Rombach et al. 2022) is trained on DDPM's discrete forward process
(Ho et al. 2020, Eq. 4): ``x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps`` for the integer
timesteps ``k = 0 .. N-1`` (``N = num_train_timesteps``, usually 1000) with
``abar_k = prod_{i<=k} (1 - beta_i)``. :class:`DiscretePath` puts that table on genimage's
continuous time ``t in [0, 1]``:

* timestep ``k`` sits at ``t = (k + 1) / N``; ``t = 0`` is the clean image (``abar = 1``),
  ``t = 1`` the last training timestep ``N - 1``;
* between those knots ``log abar`` is interpolated linearly, so ``alpha = sqrt(abar)``,
  ``sigma = sqrt(1 - abar)`` and their derivatives are defined at every ``t`` and every
  genimage sampler (Euler, Heun, DPM-Solver++, DDPM, consistency) runs on it;
* the backbone is fed the (fractional) timestep ``c_noise = t N - 1``, exactly the integer
  ``k`` at a knot, which is what the UNet was trained on.

At the knots this *is* the model's schedule, so DDIM (Song et al. 2021, Eq. 12) over the
scheduler's own timesteps (the ``"discrete"`` schedule, :meth:`DiscretePath.scheduler_timesteps`)
is diffusers' ``DDIMScheduler`` step for step. The table and the timesteps come from
diffusers' scheduler class named in the model's ``scheduler_config.json`` (beta schedule,
``timestep_spacing``, ``steps_offset``), so they are the model's exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.paths.base import PATHS, NoisePath, as_time

#: The scheduler config of Stable Diffusion 1.x/2.x (scaled-linear betas), used when none is given.
SD_DEFAULT_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "steps_offset": 1, "set_alpha_to_one": False,
    "clip_sample": False,
}

#: Scheduler classes whose last DDIM step lands on ``alphas_cumprod[0]`` unless ``set_alpha_to_one``.
_FINAL_ALPHA_CLASSES = ("DDIMScheduler", "PNDMScheduler")


def diffusers_scheduler(config: dict[str, Any]):
    """The diffusers scheduler ``config["_class_name"]`` built from ``config`` (a
    ``scheduler_config.json`` dict); an unknown class falls back to ``DDIMScheduler``, which
    reads the same beta-schedule keys."""
    import diffusers

    name = str(config.get("_class_name") or "DDIMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = diffusers.DDIMScheduler
    try:
        sched = cls.from_config(dict(config))
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise GenimageError(f"cannot build the model's scheduler {name} from its scheduler_config.json: {exc}") from None
    if getattr(sched, "alphas_cumprod", None) is None:
        sched = diffusers.DDIMScheduler.from_config(dict(config))
    return sched


@PATHS.register("sd-discrete")
class DiscretePath(NoisePath):
    """VP path interpolating a discrete ``alphas_cumprod`` table (see the module docstring).

    Args:
        scheduler: A diffusers ``scheduler_config.json`` dict (class name, ``num_train_timesteps``,
            ``beta_start``/``beta_end``/``beta_schedule`` or ``trained_betas``,
            ``timestep_spacing``, ``steps_offset``, ``set_alpha_to_one``). Default:
            :data:`SD_DEFAULT_SCHEDULER`.
    """

    name = "sd-discrete"
    t_max = 1.0
    sigma_hat_max_schedule = 80.0

    def __init__(self, scheduler: dict[str, Any] | None = None) -> None:
        self.scheduler_config = dict(scheduler or SD_DEFAULT_SCHEDULER)
        sched = diffusers_scheduler(self.scheduler_config)
        abar = torch.as_tensor(sched.alphas_cumprod).double()
        if abar.ndim != 1 or len(abar) < 2 or not bool(((abar > 0) & (abar <= 1)).all()):
            raise GenimageError("the scheduler's alphas_cumprod must be a table of numbers in (0, 1]")
        if bool((abar[1:] > abar[:-1]).any()):
            raise GenimageError("the scheduler's alphas_cumprod must not increase with the timestep")
        self.num_train_timesteps = n = len(abar)
        # knot j (time j / N) holds log abar of timestep j - 1; knot 0 is the clean image.
        self._log_abar = torch.cat([abar.new_zeros(1), abar.log()])
        self.t_min = 1.0 / n
        cls = str(self.scheduler_config.get("_class_name") or "DDIMScheduler")
        # DDIM's last step goes to alphas_cumprod[0] (slightly noisy) unless set_alpha_to_one.
        self.final_at_first_timestep = cls in _FINAL_ALPHA_CLASSES and not self.scheduler_config.get(
            "set_alpha_to_one", cls == "DDIMScheduler")

    # ------------------------------------------------------------------ the table, interpolated
    def _segment(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log abar(t), d log abar / dt)`` by linear interpolation between knots."""
        n = self.num_train_timesteps
        u = (as_time(t) * n).clamp(0.0, float(n))
        j = u.floor().clamp(max=n - 1).long()
        lo, hi = self._log_abar[j], self._log_abar[j + 1]
        return lo + (u - j) * (hi - lo), (hi - lo) * n

    def alpha(self, t):
        return torch.exp(0.5 * self._segment(t)[0])

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(self._segment(t)[0]))

    def d_alpha(self, t):
        log_abar, slope = self._segment(t)
        return 0.5 * torch.exp(0.5 * log_abar) * slope

    def d_sigma(self, t):
        log_abar, slope = self._segment(t)
        return -torch.exp(log_abar) * slope / (2.0 * torch.sqrt(-torch.expm1(log_abar)))

    def t_from_sigma_hat(self, sigma_hat):
        # sigma_hat^2 = 1 / abar - 1  =>  log abar = -log(1 + sigma_hat^2); invert the interpolation.
        target = -torch.log1p(as_time(sigma_hat) ** 2)
        neg = -self._log_abar  # increasing from 0
        j = torch.searchsorted(neg, -target).clamp(1, self.num_train_timesteps)
        lo, hi = self._log_abar[j - 1], self._log_abar[j]
        frac = torch.where(hi < lo, (target - lo) / (hi - lo), torch.zeros_like(target))
        return ((j - 1) + frac.clamp(0.0, 1.0)) / self.num_train_timesteps

    def c_noise(self, t):
        """The UNet's timestep ``t N - 1`` (an integer at every knot)."""
        u = as_time(t) * self.num_train_timesteps
        r = u.round()
        return torch.where((u - r).abs() < 1e-6, r, u) - 1.0

    # ------------------------------------------------------------------ the scheduler's own timesteps
    def time_of_timestep(self, k: torch.Tensor | float) -> torch.Tensor:
        """Path time of (possibly fractional) discrete timestep ``k``: ``(k + 1) / N``."""
        return (as_time(k) + 1.0) / self.num_train_timesteps

    def scheduler_timesteps(self, steps: int) -> torch.Tensor:
        """The times of the timesteps the model's diffusers scheduler samples with for ``steps``
        steps (its ``set_timesteps``), descending, then the end: ``0`` (the clean image), or
        for DDIM/PNDM with ``set_alpha_to_one = false`` the first timestep's time ``1 / N``, as
        diffusers' last DDIM step lands there."""
        sched = diffusers_scheduler(self.scheduler_config)
        try:
            sched.set_timesteps(int(steps))
        except (ValueError, TypeError) as exc:
            raise GenimageError(f"the model's scheduler cannot make {steps} steps: {exc}") from None
        k = torch.as_tensor(sched.timesteps).double()[: int(steps)]
        times = self.time_of_timestep(k)
        end = self.t_min if self.final_at_first_timestep and float(times[-1]) > self.t_min else 0.0
        return torch.cat([times, times.new_tensor([end])])

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "scheduler": dict(self.scheduler_config)}
