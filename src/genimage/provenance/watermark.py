"""An invisible watermark in generated pixels, and its detector.

Spread-spectrum marking (Cox et al. 1997, "Secure Spread Spectrum Watermarking for
Multimedia", Sec. III): a keyed pseudo-random pattern ``w`` of +-1, one entry per pixel value,
is added to the 8-bit image at ``strength`` levels (2 of 255 by default: PSNR 42 dB). The
detector correlates the image's high frequencies with the pattern's. It subtracts each pixel's
3x3 neighbourhood mean from both, which removes most of the image content, the part that would
mask the pattern:

    z = <h(x), h(w)> / (std(h(x)) * ||h(w)||)

Without the mark, ``z`` is approximately standard normal, because the pattern is independent
of the image. With it, ``z`` grows like ``strength * sqrt(values) / std(h(x))``. An image is
called marked when the one-sided p-value of ``z`` is below ``1e-3`` (z > 3.09).

Only images large enough to carry the mark are marked (``MIN_VALUES`` pixel values). Measured
in ``benchmarks/watermark_detection.py``: the bundled 32x32 RGB shapes images reach a median z
of 11 at 2 levels. The 8x8 digits (64 values, strokes saturated at black and white) stay
below 1 even at 4 levels, so no invisible mark fits in them, and genimage does not pretend
to mark them.

The key: anyone can detect marks made with the public default key, as with the open
watermark of other image generators. Set ``GENIMAGE_WATERMARK_KEY`` to a secret to mark and
detect with your own key. Records store only the key's id (the first 16 hex digits of its
sha256).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os

import torch
import torch.nn.functional as F

from genimage.errors import GenimageError

DEFAULT_KEY = "genimage-public-watermark-v1"
KEY_ENV = "GENIMAGE_WATERMARK_KEY"
DEFAULT_STRENGTH = 2
MIN_VALUES = 3072
DETECTION_Z = 3.0902  # one-sided p = 1e-3


def watermark_key() -> str:
    """The key in use: ``$GENIMAGE_WATERMARK_KEY`` or the public default."""
    return os.environ.get(KEY_ENV) or DEFAULT_KEY


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def fits(channels: int, height: int, width: int) -> bool:
    """Whether images of this shape are large enough to carry the mark."""
    return channels * height * width >= MIN_VALUES


def pattern(key: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The +-1 pattern of ``key`` for images of ``shape`` ``(C, H, W)`` (a new tensor)."""
    return _pattern(key, tuple(int(s) for s in shape)).clone()


@functools.lru_cache(maxsize=16)
def _pattern(key: str, shape: tuple[int, int, int]) -> torch.Tensor:
    digest = hashlib.sha256(f"{key}|{shape[0]}x{shape[1]}x{shape[2]}".encode("utf-8")).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return torch.randint(0, 2, tuple(shape), generator=g).float() * 2 - 1


@functools.lru_cache(maxsize=16)
def _pattern_highpass(key: str, shape: tuple[int, int, int]) -> tuple[torch.Tensor, float]:
    hw = _highpass(_pattern(key, shape)[None])
    return hw, float(hw.norm())


def embed(image: torch.Tensor, key: str | None = None, strength: int = DEFAULT_STRENGTH) -> torch.Tensor:
    """``image`` ``(C, H, W)`` in ``[-1, 1]`` with the mark of ``key``: its 8-bit levels plus
    ``strength`` x the pattern (clamped to 0..255), returned on the exact 8-bit grid, so
    saving it as PNG keeps the mark unchanged."""
    from genimage.data.types import image_to_uint8

    if image.ndim != 3:
        raise GenimageError(f"embed takes one (C, H, W) image, got shape {tuple(image.shape)}")
    levels = torch.from_numpy(image_to_uint8(image.detach().float().cpu())).permute(2, 0, 1).float()
    marked = (levels + strength * pattern(key or watermark_key(), tuple(levels.shape))).clamp(0, 255)
    return marked / 127.5 - 1


def _highpass(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` minus its 3x3 neighbourhood mean (reflected at the borders), per
    channel; the box sum is separable, so two passes of three shifted adds (faster on the CPU
    than a grouped convolution)."""
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    return x - box / 9


def detection_scores(images: torch.Tensor, key: str | None = None) -> torch.Tensor:
    """``z`` of each image ``(N, C, H, W)`` in ``[-1, 1]`` (module docstring)."""
    if images.ndim != 4 or min(images.shape[-2:]) < 2:
        raise GenimageError(f"detection takes images (N, C, H, W) of at least 2x2 pixels, got {tuple(images.shape)}")
    levels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    h = _highpass(levels)
    hw, hw_norm = _pattern_highpass(key or watermark_key(), tuple(int(s) for s in images.shape[1:]))
    num = (h * hw).flatten(1).sum(1)
    den = h.flatten(1).std(1).clamp(min=1e-6) * hw_norm
    return num / den


def record_entry(channels: int, height: int, width: int, enabled: bool = True) -> dict | None:
    """What a generation record says of the mark of an image of this shape: the key id and
    strength, or ``None`` (marking off, or an image too small to carry it). RGB images of at
    least 128x128 pixels (:func:`genimage.provenance.dwtdct.fits`) also get ``dwtdct``: the hex
    message of the invisible-watermark-compatible mark, applied after the pattern."""
    from genimage.provenance import dwtdct

    if not enabled or not fits(channels, height, width):
        return None
    entry = {"key_id": key_id(watermark_key()), "strength": DEFAULT_STRENGTH}
    if channels == 3 and dwtdct.fits(height, width):  # large RGB images also carry the DWT-DCT mark
        entry["dwtdct"] = dwtdct.default_message(watermark_key()).hex()
    return entry


def recorded_key(entry: dict, what: str = "watermark") -> str:
    """The current key, checked against the ``key_id`` of a record's ``what`` entry (a clear
    error, naming :data:`KEY_ENV`, when the record was marked with another key)."""
    key = watermark_key()
    if entry.get("key_id") != key_id(key):
        raise GenimageError(f"this record's {what} used key id {entry.get('key_id')}, not the current key's "
                            f"{key_id(key)}; set {KEY_ENV} to the key it was made with")
    return key


def apply_entry(image: torch.Tensor, entry: dict | None) -> torch.Tensor:
    """``image`` marked as a record's ``watermark`` entry says (unchanged for ``None``)."""
    if not entry:
        return image
    key = recorded_key(entry)
    marked = embed(image, key, int(entry.get("strength", DEFAULT_STRENGTH)))
    if entry.get("dwtdct"):
        from genimage.data.types import image_from_uint8, image_to_uint8
        from genimage.provenance import dwtdct

        rgb = dwtdct.embed(image_to_uint8(marked), bytes.fromhex(entry["dwtdct"]))
        marked = image_from_uint8(rgb)
    return marked


def p_value(z: float) -> float:
    """One-sided p-value of a standard normal score."""
    return 0.5 * math.erfc(z / math.sqrt(2))
