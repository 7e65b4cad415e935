"""The contract every denoising backbone implements.

A backbone maps ``(x, c_noise, cond) -> raw output`` and knows nothing about noise
schedules (Karras et al. 2022, "Elucidating the Design Space", Sec. 5: the network F
is separate from its preconditioning). What the raw output means (eps, x0, v, velocity)
is decided by the path/objective, never by the backbone.

Conditioning is a dict of tensors, all with batch size B:

* ``"label"``: LongTensor ``(B,)``; class index in ``[0, num_classes)`` or ``-1`` for
  "no label" (the backbone uses a learned null embedding — classifier-free guidance).
* ``"text"``: FloatTensor ``(B, L, D_text)`` per-token text states, with
  ``"text_mask"``: BoolTensor ``(B, L)``, True on real tokens. A sample whose mask is
  all False is unconditional (learned null text embedding).

``cond`` may be ``None`` or miss keys; missing conditioning means unconditional.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch

from genimage.registry import Registry

BACKBONES: Registry[Any] = Registry("backbone")
"""name -> (ConfigDataclass, ModuleClass). Modules take their config as the only argument."""


class Backbone(Protocol):
    config: Any

    def __call__(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Args:
            x: Noisy input ``(B, C, H, W)``.
            c_noise: Noise-level conditioning ``(B,)``, a real number per sample produced by
                the path (``NoisePath.c_noise``), typically within [-1000, 1000].
            cond: Optional conditioning dict as described in the module docstring.

        Returns:
            Raw network output ``(B, C, H, W)``.
        """


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A backbone config dataclass as a JSON-ready dict."""
    return dataclasses.asdict(cfg)


def build_backbone(name: str, config: dict[str, Any]) -> torch.nn.Module:
    """Build the backbone registered as ``name`` from a plain config dict (config.json)."""
    cfg_cls, module_cls = BACKBONES.get(name)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(config) - known
    if unknown:
        from genimage.errors import GenimageError

        raise GenimageError(f"unknown {name} config keys {sorted(unknown)}; valid keys: {sorted(known)}")
    return module_cls(cfg_cls(**config))
