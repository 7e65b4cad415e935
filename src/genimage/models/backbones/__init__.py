"""Denoising backbones ``(x, c_noise, cond) -> raw output``; importing this registers them.

* ``"dit"``: :class:`~genimage.models.backbones.dit.DiT`, an adaLN-Zero transformer.
* ``"unet"``: :class:`~genimage.models.backbones.unet.UNet`, a wrapper of diffusers' UNets
  (diffusers itself is imported only when a UNet is built).
"""

from genimage.models.backbones import dit, unet  # noqa: F401  (registration side effects)
from genimage.models.backbones.base import BACKBONES, Backbone, build_backbone, config_to_dict

__all__ = ["BACKBONES", "Backbone", "build_backbone", "config_to_dict"]
