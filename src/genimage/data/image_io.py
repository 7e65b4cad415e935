"""Reading image files safely and converting between PIL images and model tensors.

Every image that enters genimage goes through :func:`decode_image`, which turns "whatever
is on disk" into an 8-bit ``"RGB"`` (or ``"L"``) PIL image the same way every time:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a portrait photo
  taken with a rotated camera is portrait in training too.
* Transparency (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour) is
  composited on **white**, not dropped (dropping alpha exposes whatever colour the
  transparent pixels happen to store, often black).
* Palette (``P``), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and 1-bit images are converted
  with PIL's converters.
* 16-bit grayscale (``I;16*``) is scaled to 8 bits by dividing by 257 (65535 -> 255), and
  32-bit ``I`` by the same rule when its values lie in ``[0, 65535]``, otherwise by its
  own min-max range; float ``F`` images are multiplied by 255 when in ``[0, 1]``,
  otherwise min-max scaled. PIL's own ``convert("L")`` *clamps* these instead, which
  turns most 16-bit images pure white.
* Grayscale is expanded to 3 equal channels when ``channels=3`` (the default); with
  ``channels=1`` colour images are reduced to luma (ITU-R 601-2, PIL's ``"L"``).

A file that cannot be turned into an image raises :class:`BadImageError` carrying one of
the reason categories below, so a dataset can skip and report it instead of crashing.

Tensors follow the dataset convention: ``(C, H, W)`` float in ``[-1, 1]``, where pixel
value ``v`` in ``0..255`` maps to ``v / 127.5 - 1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from genimage.utils.atomic import atomic_path
from genimage.data.types import image_from_uint8, image_to_uint8

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp",
        ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico",
    }
)
"""Lower-case file extensions treated as images when scanning a folder."""

DEFAULT_MAX_PIXELS: int = 64 * 1024 * 1024
"""Default pixel cap (width x height, 64 Mi pixels); larger images count as decompression bombs."""

# Reason categories for files that cannot be used. Stable strings: they appear in reports.
ZERO_BYTE = "zero-byte"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
OVER_PIXEL_CAP = "over pixel cap"
UNREADABLE = "unreadable"
UNSUPPORTED_MODE = "unsupported mode"

GRAYSCALE_MODES: frozenset[str] = frozenset(
    {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
)
"""Source modes that carry no colour (used to decide ``channels="auto"``)."""


class BadImageError(Exception):
    """A file that cannot be used as an image.

    Args:
        reason: One of the reason categories of this module (``ZERO_BYTE``, ``TRUNCATED``, ...).
        detail: The underlying error message, for humans.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a successful decode learned about a file.

    Attributes:
        width: Width after EXIF orientation, in pixels.
        height: Height after EXIF orientation, in pixels.
        mode: The PIL mode stored in the file (before conversion), e.g. ``"RGBA"``, ``"I;16"``.
        format: The PIL format name, e.g. ``"PNG"``.
        num_bytes: File size in bytes.
        sha256: Hex SHA-256 of the file bytes.
    """

    width: int
    height: int
    mode: str
    format: str
    num_bytes: int
    sha256: str


def _classify_decode_error(exc: BaseException) -> BadImageError:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return BadImageError(OVER_PIXEL_CAP, msg)
    if isinstance(exc, UnidentifiedImageError):
        return BadImageError(NOT_AN_IMAGE, "not a recognised image format")
    if isinstance(exc, EOFError) or "truncat" in msg.lower():
        return BadImageError(TRUNCATED, msg)
    return BadImageError(CORRUPT, f"{type(exc).__name__}: {msg}")


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, mapping OS errors to :class:`BadImageError` (``UNREADABLE``)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:  # PermissionError, FileNotFoundError (dangling link), EIO, ...
        raise BadImageError(UNREADABLE, f"{type(exc).__name__}: {exc.strerror or exc}") from None


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth single-channel array to uint8 (see module docstring)."""
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise BadImageError(CORRUPT, f"non-finite pixel values in mode {mode} image")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        out = arr / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        out = arr * 255.0
    elif hi > lo:
        out = (arr - lo) * (255.0 / (hi - lo))
    else:
        out = np.zeros_like(arr)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # clip only guards float rounding


def convert_image(img: Image.Image, channels: int = 3) -> Image.Image:
    """Convert a loaded PIL image of any mode to 8-bit ``"RGB"`` (channels=3) or ``"L"`` (1).

    EXIF orientation is *not* applied here; :func:`decode_image` does that first.

    Args:
        img: A loaded PIL image.
        channels: 3 for RGB output, 1 for grayscale output.

    Returns:
        A new image in mode ``"RGB"`` or ``"L"``.

    Raises:
        BadImageError: ``UNSUPPORTED_MODE`` if PIL cannot convert the mode.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    mode = img.mode
    try:
        if mode in ("I", "F") or mode.startswith("I;16"):
            img = Image.fromarray(_scale_to_uint8(np.asarray(img), mode), mode="L")
        elif mode == "1":
            img = img.convert("L")
        elif mode == "La":  # premultiplied; PIL converts it only to LA-family modes
            img = img.convert("LA")
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "RGBa", "LA", "PA"):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba).convert("RGB")
        target = "RGB" if channels == 3 else "L"
        if img.mode != target:
            img = img.convert(target)
    except BadImageError:
        raise
    except (ValueError, OSError) as exc:
        raise BadImageError(UNSUPPORTED_MODE, f"cannot convert mode {mode}: {exc}") from None
    return img


def decode_image(
    data: bytes,
    *,
    channels: int = 3,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    verify: bool = False,
) -> tuple[Image.Image, ImageInfo]:
    """Decode image bytes into an 8-bit RGB/L PIL image, rejecting anything unusable.

    Steps: size check -> open (header only) -> pixel-cap check -> optional ``verify()``
    (checksums, e.g. PNG CRCs) -> full decode -> EXIF orientation -> mode conversion.
    PIL's own decompression-bomb protection (``DecompressionBombError``, raised above
    ``2 * PIL.Image.MAX_IMAGE_PIXELS``) is reported as ``OVER_PIXEL_CAP`` too; PIL's
    ``DecompressionBombWarning`` is silenced because ``max_pixels`` is the cap we apply.
    Multi-frame files (GIF, TIFF) use their first frame.

    Args:
        data: The raw file bytes.
        channels: 3 for RGB output, 1 for grayscale.
        max_pixels: Largest allowed ``width * height``; ``None`` disables our cap (PIL's
            hard limit still applies).
        verify: Also run PIL's ``verify()`` (slower; catches corruption a decoder tolerates).

    Returns:
        ``(image, info)``: the converted image and facts about the file.

    Raises:
        BadImageError: With a reason category when the bytes are not a usable image.
    """
    if len(data) == 0:
        raise BadImageError(ZERO_BYTE, "file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning, "Corrupt EXIF data", ...
        try:
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            src_mode = img.mode
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadImageError(OVER_PIXEL_CAP, f"{w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
            if verify:
                img.verify()
                img = Image.open(io.BytesIO(data))  # verify() leaves the image unusable
            img.load()
        except BadImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "bad file"
            raise _classify_decode_error(exc) from None
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - broken EXIF must not discard a decodable image
            pass
        out = convert_image(img, channels)
    info = ImageInfo(
        width=out.width,
        height=out.height,
        mode=src_mode,
        format=fmt,
        num_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return out, info


def load_image(
    path: str | os.PathLike[str],
    *,
    channels: int = 3,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    verify: bool = False,
) -> tuple[Image.Image, ImageInfo]:
    """Read and decode one image file; see :func:`decode_image`. Raises :class:`BadImageError`."""
    return decode_image(read_file_bytes(path), channels=channels, max_pixels=max_pixels, verify=verify)


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side equals ``size`` (bicubic, antialiased), keeping aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new = (size, max(size, round(h * size / w)))
    else:
        new = (max(size, round(w * size / h)), size)
    return img.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit ``"L"``/``"RGB"`` PIL image as a float tensor ``(C, H, W)`` in ``[-1, 1]``."""
    return image_from_uint8(np.asarray(img, dtype=np.uint8))


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """A ``(C, H, W)`` tensor in ``[-1, 1]`` (C = 1, 3 or 4) as a PIL image (``L``/``RGB``/``RGBA``).

    Pixel values are ``round((x + 1) * 127.5)`` clamped to ``0..255``, the exact inverse
    of :func:`pil_to_tensor` on 8-bit images. NaN becomes 128 (mid gray) and +-inf 255 / 0,
    so a diverged sample still saves and is visible as flat gray.
    """
    if img.ndim != 3 or img.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected a (C, H, W) tensor with C in 1, 3, 4; got shape {tuple(img.shape)}")
    img = torch.nan_to_num(img.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=-1.0)
    arr = image_to_uint8(img)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB" if arr.shape[2] == 3 else "RGBA")


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(C, H', W')`` image, ``nrow`` images per row.

    Args:
        images: Batch ``(N, C, H, W)`` in ``[-1, 1]``.
        nrow: Images per row; default ``ceil(sqrt(N))`` (a near-square grid).
        padding: Pixels between images and around the border.
        pad_value: Value of the padding, in ``[-1, 1]`` (default white).
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    grid = torch.full(
        (c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), float(pad_value)
    )
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i].detach().to("cpu", torch.float32)
    return grid


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike[str], nrow: int | None = None, padding: int = 2
) -> Path:
    """Save ``(N, C, H, W)`` images in ``[-1, 1]`` as one grid image (PNG by default).

    The file is written atomically (temporary file + ``os.replace``); parent folders are
    created. The format follows the suffix of ``path`` (``.png`` recommended: lossless).

    Args:
        images: Batch ``(N, C, H, W)``, C in 1, 3 or 4, values in ``[-1, 1]``.
        path: Output file.
        nrow: Images per row; default ``ceil(sqrt(N))``.
        padding: White pixels between images.

    Returns:
        The path written.
    """
    pil = tensor_to_pil(make_grid(images, nrow=nrow, padding=padding))
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, what="image") as tmp:
        pil.save(tmp, format=fmt)
    return path
