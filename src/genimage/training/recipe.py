"""The CPU-sized default recipe of ``genimage train --data FOLDER`` (issue 23, item 1).

A user's photo folder trained with the general defaults (a pixel-space model of 1,000 steps,
warm-up 100, EMA 0.999) learns nothing in the 15 minutes a laptop gives it. The recipe here:

* **latent space** through the bundled generic photo autoencoder
  (``genimage/weights/photo-autoencoder``: f4, 32x32x3 -> 4x8x8; latent diffusion, Rombach et
  al., 2022) when the images are RGB, at its 32 px or at any ``--image-size`` that is a multiple
  of its factor 4 (the autoencoder is fully convolutional: 64 px -> 4x16x16, 128 px ->
  4x32x32), else pixel space;
* **augmented views**: random crops and horizontal flips, ``views`` of them per image encoded
  into the latent cache (:class:`~genimage.data.views.AugmentedViews`), so that a small folder
  gives a few thousand latents;
* **a backbone picked by measurement**: the candidates of :data:`CANDIDATES` are timed,
  smallest first, for a training step on this machine (forward, backward, AdamW on random
  inputs of the training geometry, after a warm-up step; the fastest of three); the largest that reaches
  :data:`MIN_STEPS` steps in the budget wins (measuring stops at the first that does not),
  else the smallest; bf16 is used only if it measured faster than fp32;
* **a schedule sized to the budget**: ``steps`` = what the measured step time allows in the
  budget (15 min by default, ``--max-minutes`` otherwise), warm-up 5% of them, cosine decay
  to 10%, EMA decay ``1 - 10 / steps`` (an averaging window of a tenth of the run, on top of
  the EMA's own ``(1 + n) / (10 + n)`` warm-up), so the sampled weights are trained ones.

The library decides and explains; the CLI prints :meth:`Recipe.lines` and applies it. Values
the user gave on the command line win over the recipe's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genimage.errors import GenimageError

PHOTO_AUTOENCODER = Path(__file__).resolve().parent.parent / "weights" / "photo-autoencoder"
"""Folder of the bundled generic photo autoencoder (f4, 32 px RGB)."""

DEFAULT_BUDGET_MINUTES = 15.0
"""Training time the recipe plans for when ``--max-minutes`` is not given."""

MIN_STEPS = 1500
"""Steps a candidate backbone must reach in the budget to be chosen (else the fastest is)."""

TARGET_LATENTS = 4096
"""Augmented views are added until a folder gives about this many latents (at most 16 views)."""

CANDIDATES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("unet", "UNet 64-128-128 (attention at 2x2 and in the middle)",
     {"block_out_channels": [64, 128, 128], "layers_per_block": 1, "norm_num_groups": 32}),
    ("unet", "UNet 48-96 (attention at the lowest level and in the middle)",
     {"block_out_channels": [48, 96], "layers_per_block": 1, "norm_num_groups": 16, "attention_head_dim": 32}),
    ("unet", "UNet 32-64",
     {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 16, "attention_head_dim": 32}),
)
"""``(backbone, description, config overrides)``, largest first (measured smallest first)."""


@dataclasses.dataclass
class Recipe:
    """What the recipe chose, and why.

    Attributes:
        settings: ``genimage train`` option names -> values (``backbone``, ``set`` (backbone
            overrides), ``autoencoder``, ``image_size``, ``crop``, ``flip``, ``views``, ``cond``,
            ``steps``, ``batch_size``, ``lr``, ``warmup_steps``, ``lr_schedule``,
            ``min_lr_ratio``, ``ema_decay``, ``bf16``, ``max_minutes``, ``checkpoint_every``).
        reasons: Option name -> one line saying why.
        measurements: ``[{"candidate", "batch", "bf16", "seconds_per_step"}, ...]``.
    """

    settings: dict[str, Any]
    reasons: dict[str, str]
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable lines, one per setting: ``name = value  (reason)``."""
        return [f"  {k} = {v}  ({self.reasons.get(k, '')})" for k, v in self.settings.items()]

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "reasons": self.reasons, "measurements": self.measurements}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Recipe:
        return cls(dict(d["settings"]), dict(d["reasons"]), list(d.get("measurements", [])))


def measure_step_seconds(backbone: str, config: dict[str, Any], batch: int, *, bf16: bool = False,
                         repeats: int = 3, device: str = "cpu") -> float:
    """Fastest of ``repeats`` timed training steps of ``backbone`` on random inputs of its geometry.

    A step is forward, MSE loss, backward and an AdamW update at ``batch``, after one warm-up
    step; the global RNG is forked, so measuring changes nothing in the run that follows.

    Args:
        backbone: Registered backbone name (``unet``, ``dit``).
        config: Its full config dict (``image_size``, ``in_channels``, ...).
        batch: Images per step.
        bf16: Run the forward pass under bfloat16 autocast.
        repeats: Timed steps (default 3). The fastest is returned: on a shared machine the
            slow ones measure the neighbours' load spikes, and the recipe's ``max_minutes``
            stops a run that turns out slower.
        device: Torch device.
    """
    from genimage.models.backbones import build_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_backbone(backbone, config).to(device).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        c, s = config["in_channels"], config["image_size"]
        x = torch.randn(batch, c, s, s, device=device)
        t = torch.rand(batch, device=device)
        times = []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                out = net(x, t)
            loss = (out.float() - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
    return min(times)


def _views(n_images: int) -> int:
    return max(1, min(16, math.ceil(TARGET_LATENTS / max(1, n_images))))


def choose_recipe(*, n_images: int, channels: int, image_size: int | None, budget_minutes: float | None = None,
                  bf16_supported: bool = False, has_captions: bool = False, autoencoder: str | Path | None = None,
                  batch_size: int = 64, measure: Callable[..., float] = measure_step_seconds,
                  candidates=CANDIDATES, min_steps: int = MIN_STEPS, device: str = "cpu") -> Recipe:
    """Choose the training recipe for an image folder by measuring candidate backbones here.

    Args:
        n_images: Images in the folder.
        channels: Their channels (1 or 3).
        image_size: ``--image-size`` if given, else ``None`` (the autoencoder's 32 px).
        budget_minutes: Training time to plan for (default :data:`DEFAULT_BUDGET_MINUTES`).
        bf16_supported: Whether bfloat16 is a candidate here (the hardware has fast bf16).
        has_captions: Whether the folder has captions (the recipe trains unconditionally; the
            reason line says how to use them).
        autoencoder: Photo autoencoder folder (default :data:`PHOTO_AUTOENCODER`).
        batch_size: Images per step.
        measure: ``(backbone, config, batch, bf16=...) -> seconds`` (default
            :func:`measure_step_seconds`; tests may pass a cheaper one).
        candidates: ``(backbone, description, overrides)`` tried largest first.
        min_steps: Steps a candidate must reach in the budget to be chosen.
        device: Device of the measurements.

    Returns:
        The :class:`Recipe`.
    """
    from genimage.models.config import ModelConfig
    from genimage.models.presets import backbone_config

    if n_images < 1:
        raise GenimageError("the folder has no images to train on")
    budget = float(budget_minutes or DEFAULT_BUDGET_MINUTES)
    settings: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    ae = Path(autoencoder) if autoencoder is not None else PHOTO_AUTOENCODER
    ae_size = ae_shape = None
    down = 4
    if (ae / "config.json").is_file():
        ae_cfg = ModelConfig.load(ae)
        ae_size, ae_ch = ae_cfg.image_size, ae_cfg.channels
        down = int(ae_cfg.backbone_config.get("downsample", 4))
    latent = (ae_size is not None and channels == ae_ch
              and (image_size is None or (image_size >= down and image_size % down == 0)))
    if latent:
        size = image_size or ae_size
        ae_shape = (int(ae_cfg.backbone_config.get("latent_channels", 4)), size // down)
        settings["autoencoder"] = str(ae)
        reasons["autoencoder"] = (f"latent space: the bundled photo autoencoder (f{down}, fully convolutional) turns "
                                  f"{size}px RGB into {ae_shape[0]}x{ae_shape[1]}x{ae_shape[1]} latents, "
                                  f"{3 * down * down // ae_shape[0]}x fewer values per image")
        settings["image_size"] = size
        reasons["image_size"] = ("as given" if image_size else
                                 f"the autoencoder's training size; pass --image-size (a multiple of {down}) for larger images")
        geometry = (ae_shape[0], ae_shape[1])
    else:
        why = ("no bundled photo autoencoder" if ae_size is None else
               f"{channels}-channel images" if channels != ae_ch else
               f"--image-size {image_size} is not a multiple of its factor {down}")
        settings["autoencoder"] = None
        reasons["autoencoder"] = f"pixel space: {why}"
        settings["image_size"] = image_size or 32
        reasons["image_size"] = "as given" if image_size else "the folder default"
        geometry = (channels, settings["image_size"])
    views = _views(n_images)
    settings["crop"], settings["flip"] = "random", True
    reasons["crop"] = "random crops of the resized image (augmentation)"
    reasons["flip"] = "random horizontal flips (augmentation)"
    if latent:
        settings["views"] = views
        reasons["views"] = (f"{views} augmented view(s) of each of the {n_images} images encoded once "
                            f"({views * n_images} latents; a latent cache freezes augmentation otherwise)")
    settings["cond"] = "none"
    reasons["cond"] = ("unconditional; the folder has captions: pass --cond text to condition on them (slower)"
                       if has_captions else "unconditional (no labels or captions)")

    # backbone and precision, by measurement
    measurements: list[dict[str, Any]] = []
    precisions = [False, True] if bf16_supported else [False]
    chosen = None
    for backbone, desc, overrides in reversed(candidates):  # smallest first; stop at the first too slow
        cfg = backbone_config(backbone, "small", image_size=geometry[1], channels=geometry[0], overrides=overrides)
        best = None
        for bf in precisions:
            sec = measure(backbone, cfg, batch_size, bf16=bf)
            measurements.append({"candidate": desc, "batch": batch_size, "bf16": bf, "seconds_per_step": round(sec, 4)})
            if best is None or sec < best[0]:
                best = (sec, bf)
        precisions = [best[1]]  # the precision that won on the smallest candidate is kept for the rest
        entry = (backbone, desc, overrides, best[0], best[1], int(budget * 60 / best[0]))
        if chosen is not None and entry[5] < min_steps:
            break
        chosen = entry
        if entry[5] < min_steps:  # even the smallest is too slow: take it
            break
    backbone, desc, overrides, sec, bf, steps = chosen
    settings["backbone"], settings["set"] = backbone, overrides
    reasons["backbone"] = (f"{desc}: {sec:.2f} s/step measured at batch {batch_size}, {steps} steps in {budget:g} min"
                           + (f" (the largest candidate reaching {min_steps} steps)" if steps >= min_steps else
                              f" (the smallest candidate; none reached {min_steps} steps)"))
    settings["bf16"] = bf
    if bf16_supported:
        m = {r["bf16"]: r["seconds_per_step"] for r in measurements[:2]}
        reasons["bf16"] = f"measured on {candidates[-1][1]}: fp32 {m[False]:.2f} s/step, bf16 {m[True]:.2f} s/step"
    else:
        reasons["bf16"] = "fp32: this hardware has no fast bfloat16"
    steps = max(100, steps)
    settings["steps"] = steps
    reasons["steps"] = f"what {budget:g} min allow at the measured speed (pass --steps or --max-minutes to change)"
    settings["batch_size"] = batch_size
    reasons["batch_size"] = "enough images per step for a stable loss, small enough for many steps"
    settings["lr"] = 1e-3
    reasons["lr"] = "small networks on short runs tolerate a high AdamW rate"
    settings["warmup_steps"] = max(20, steps // 20)
    reasons["warmup_steps"] = "5% of the steps"
    settings["lr_schedule"], settings["min_lr_ratio"] = "cosine", 0.1
    reasons["lr_schedule"] = "cosine decay over the steps: the last steps refine at a low rate"
    reasons["min_lr_ratio"] = "the rate ends at a tenth of its peak"
    settings["ema_decay"] = round(min(0.9995, max(0.99, 1 - 10 / steps)), 5)
    reasons["ema_decay"] = "averages about the last tenth of the run (1 - 10/steps), so samples use trained weights"
    settings["max_minutes"] = budget
    reasons["max_minutes"] = "stop at the budget even if the machine gets slower (--resume continues)"
    settings["checkpoint_every"] = max(100, steps // 5)
    reasons["checkpoint_every"] = "five checkpoints per run"
    return Recipe(settings, reasons, measurements)
