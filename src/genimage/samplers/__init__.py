"""Samplers: pure functions ``(model, x, timesteps, *, cond, generator, callback) -> x``.

Registered by name in :data:`SAMPLERS`; any sampler works with a model trained by any
objective because all of them talk to the model only through ``(x0, eps)`` predictions
and the path's ``alpha``/``sigma``.
"""

from genimage.registry import Registry
from genimage.samplers import consistency, ode, sde
from genimage.samplers.timesteps import SCHEDULES, make_schedule

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("euler")(ode.euler)
SAMPLERS.register("heun")(ode.heun)
SAMPLERS.register("ddim")(ode.ddim)
SAMPLERS.register("dpmpp_2m")(ode.dpmpp_2m)
SAMPLERS.register("ddpm")(sde.ddpm)
SAMPLERS.register("consistency")(consistency.consistency)

NFE_PER_STEP = {"euler": 1, "heun": 2, "ddim": 1, "dpmpp_2m": 1, "ddpm": 1, "consistency": 1}
"""Network evaluations per step (Heun's last step uses one)."""

__all__ = ["SAMPLERS", "SCHEDULES", "make_schedule", "NFE_PER_STEP"]
