"""Stacking dataset items into a training batch; shared by the trainer
(:mod:`genimage.training.loop`) and the measured warm-up step of the size estimate
(:mod:`genimage.training.estimate`)."""

from __future__ import annotations

from typing import Any

import torch

from genimage.conditioning.conditioner import Conditioner


def collate(items: list[dict], conditioner: Conditioner) -> dict[str, Any]:
    """Stack dataset items into ``{"image": (B, C, H, W), "cond": dict | None}``."""
    images = torch.stack([it["image"] for it in items])
    labels = [it.get("label") for it in items] if conditioner.uses_labels else None
    captions = [it.get("caption", "") for it in items] if conditioner.uses_text else None
    return {"image": images, "cond": conditioner(labels=labels, captions=captions, batch=len(items))}
