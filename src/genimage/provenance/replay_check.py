"""Checking a regenerated image against the PNG it should reproduce (``genimage replay``).

Shared by every replay route: the diffusion pipeline (:func:`genimage.pipeline.replay`), the
direct-sampling families (:mod:`genimage.families.records`), trained upscalers
(:mod:`genimage.editing.superres`) and style transfers (:mod:`genimage.editing.style`). It sits
below all of them so that none needs to import another's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genimage.errors import GenimageError
from genimage.provenance.record import GenerationRecord, png_pixels, read_pixels


@dataclass
class ReplayResult:
    """Outcome of a replay (:func:`genimage.pipeline.replay`).

    Attributes:
        match: True when the regenerated pixels equal the file's bit for bit.
        max_abs_diff: Largest per-pixel difference (0..255).
        differing_pixels: Number of differing uint8 values.
        record: The record read from the file.
        weights_match: Whether the model's weights hash equals the recorded one.
    """

    match: bool
    max_abs_diff: int
    differing_pixels: int
    record: GenerationRecord
    weights_match: bool


def replay_device(record: GenerationRecord, image_path: str | Path,
                  device: str | torch.device | None) -> torch.device:
    """``device`` if given, else the recorded device type, with a clear error where it is missing."""
    from genimage.utils.device import resolve_device

    if device is not None:
        return resolve_device(device)
    try:
        return resolve_device(record.device)
    except GenimageError:
        raise GenimageError(f"{image_path} was made on {record.device}, which this machine lacks; pass --device cpu "
                            f"to regenerate it here (bit for bit only on {record.device})") from None


def compare_with_png(image: torch.Tensor, image_path: str | Path, record: GenerationRecord,
                     weights_match: bool) -> ReplayResult:
    """Compare a regenerated image ``(C, H, W)`` with the pixels of the PNG it should reproduce
    (marked first, as the record says the file was)."""
    from genimage.provenance.watermark import apply_entry

    new = png_pixels(apply_entry(image, record.watermark)).to(torch.int16)
    old = read_pixels(image_path).to(torch.int16)
    if new.shape != old.shape:
        return ReplayResult(False, 255, int(old.numel()), record, weights_match)
    diff = (new - old).abs()
    return ReplayResult(bool(diff.max() == 0), int(diff.max()), int((diff > 0).sum()), record, weights_match)
