"""Objectives: callables ``(model, batch, generator) -> per-sample loss``.

:data:`OBJECTIVES` maps a name to an :class:`ObjectiveSpec` that says which path and
prediction type the model must use and builds the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from genimage.objectives.denoising import DenoisingObjective, drop_condition
from genimage.objectives.time_distributions import edm_lognormal_sigma, logit_normal_time, uniform_time
from genimage.registry import Registry


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a named objective needs from the model, and how to build its loss.

    Attributes:
        name: Registry name (saved in config.json).
        path: Default noise path name.
        prediction: Prediction type of the network output.
        build: ``(cond_drop_prob) -> objective callable``.
        description: One line for ``--help``.
    """

    name: str
    path: str
    prediction: str
    build: Callable[[float], DenoisingObjective]
    description: str


OBJECTIVES: Registry[ObjectiveSpec] = Registry("objective")


def _register(spec: ObjectiveSpec) -> None:
    OBJECTIVES.register(spec.name)(spec)


_register(ObjectiveSpec("ddpm-eps", "vp-cosine", "eps", lambda p: DenoisingObjective(uniform_time, p),
                        "DDPM, epsilon prediction, cosine VP path (Ho et al. 2020)"))
_register(ObjectiveSpec("ddpm-v", "vp-cosine", "v", lambda p: DenoisingObjective(uniform_time, p),
                        "DDPM, v prediction, cosine VP path (Salimans & Ho 2022)"))
_register(ObjectiveSpec("edm", "edm", "edm", lambda p: DenoisingObjective(edm_lognormal_sigma, p),
                        "EDM loss and preconditioning, VE path (Karras et al. 2022)"))
_register(ObjectiveSpec("flow-matching", "linear", "velocity",
                        lambda p: DenoisingObjective(partial(logit_normal_time), p),
                        "conditional flow matching / rectified flow, linear path, logit-normal t (Lipman et al. 2023; Esser et al. 2024)"))
_register(ObjectiveSpec("rectified-flow", "linear", "velocity", lambda p: DenoisingObjective(uniform_time, p),
                        "rectified flow with uniform t (Liu et al. 2023)"))

__all__ = ["OBJECTIVES", "ObjectiveSpec", "DenoisingObjective", "drop_condition"]
