"""Model families behind one interface (see :mod:`genimage.families.base`).

``FAMILIES`` maps a family name (``genimage train --family NAME``) to a
:class:`FamilySpec`; each family module registers itself on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from genimage.registry import Registry


@dataclass
class FamilySpec:
    """Args:
        name: Family name.
        model_cls: The :class:`~genimage.families.base.GenerativeModel` subclass.
        presets: Architecture configs by preset name (``"tiny"`` must exist: it is the one
            that trains on ``digits`` in minutes); each is a dict stored as
            ``ModelConfig.backbone_config``. Keys ``image_size``, ``channels`` and
            ``num_classes`` are filled from the data.
        description: One line for ``--help`` and ``genimage info``.
        train_defaults: ``TrainConfig`` overrides this family needs (e.g. GAN learning rates).
        conditioning: Conditioning kinds supported (``"label"``, ``"text"``, ``"none"``).
    """

    name: str
    model_cls: Callable[..., Any]
    presets: dict[str, dict[str, Any]]
    description: str = ""
    train_defaults: dict[str, Any] = field(default_factory=dict)
    conditioning: tuple[str, ...] = ("label", "none")


FAMILIES: Registry[FamilySpec] = Registry("family")


def register_family(spec: FamilySpec) -> FamilySpec:
    return FAMILIES.register(spec.name)(spec)


def load_all_families() -> None:
    """Import every family module so ``FAMILIES`` is complete."""
    import importlib

    for module in ("diffusion", "consistency", "reflow", "gan", "vae", "normalizing_flow", "superres"):
        try:
            importlib.import_module(f"genimage.families.{module}")
        except ModuleNotFoundError as exc:  # a family still being written
            if exc.name != f"genimage.families.{module}":
                raise
