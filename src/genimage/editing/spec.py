"""What an edit is: an input image, how much of the sampling schedule to run over it
(``strength``), and optionally a mask of the pixels to regenerate; plus loading those from
files at the model's size and the outpainting canvas.

Strength follows SDEdit (Meng et al. 2022, Sec. 3) with the step count of diffusers'
img2img: of a schedule of ``steps`` steps, the last ``floor(steps * strength)`` run, starting
from the input noised to that step's time with the image's own seeded noise. ``strength=1``
starts from (almost) pure noise, which is what inpainting wants by default.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from genimage.errors import GenimageError


def pixels_sha256(image: torch.Tensor) -> str:
    """sha256 of an image's 8-bit pixels (``(C, H, W)`` in ``[-1, 1]``, as saved to PNG)."""
    from genimage.provenance.record import png_pixels

    return hashlib.sha256(png_pixels(image).contiguous().numpy().tobytes()).hexdigest()


@dataclass
class EditSpec:
    """An img2img / inpainting edit.

    Attributes:
        image: ``(1 or N, C, H, W)`` input in ``[-1, 1]`` at the model's size (one for all
            images, or one per image).
        strength: Fraction of the schedule to run, in ``(0, 1]``.
        mask: ``(1 or N, 1, H, W)``: 1 = regenerate, 0 = keep the input (inpainting);
            ``None`` = change the whole image (img2img).
        extend: For outpainting, the ``(left, top, right, bottom)`` border that
            :func:`outpaint_canvas` made ``image`` and ``mask`` from (kept for the record).
        resample: With a mask, take every step this many times, re-noising in between
            (RePaint; :mod:`genimage.editing.resample`); 1 = off.
        low: For super-resolution, the ``(1 or N, C, S / f, S / f)`` low-resolution input the
            output must average back to over ``f x f`` blocks (``image`` is then its upsampled
            start); see :meth:`upscale`.
        window_overlap: For outpainting beyond the canvas, ``image`` and ``mask`` are a canvas
            ``(1 or N, C, H, W)`` with ``H, W >= S`` (multiples of a latent model's
            downsampling factor), painted as ``S x S`` windows overlapping by at least this
            many pixels (MultiDiffusion, :mod:`genimage.editing.windows`); ``None`` = an
            edit at the model's size.
    """

    image: torch.Tensor
    strength: float = 1.0
    mask: torch.Tensor | None = None
    extend: tuple[int, int, int, int] | None = None
    resample: int = 1
    low: torch.Tensor | None = None
    window_overlap: int | None = None

    @classmethod
    def upscale(cls, low: torch.Tensor, image_size: int, strength: float = 1.0, resample: int = 1) -> "EditSpec":
        """Super-resolution of ``low`` ``(1 or N, C, s, s)`` to ``image_size`` (a multiple of
        ``s``), starting from its bicubic upsampling when ``strength < 1``."""
        if low.ndim != 4 or low.shape[-1] != low.shape[-2] or image_size % low.shape[-1]:
            raise GenimageError(f"a {tuple(low.shape[-2:])} input does not upscale to {image_size} px: its side must "
                                f"divide {image_size}")
        start = torch.nn.functional.interpolate(low.float(), size=(image_size, image_size), mode="bicubic",
                                                align_corners=False).clamp(-1, 1)
        return cls(start, strength, resample=resample, low=low.float())

    @property
    def factor(self) -> int:
        return 1 if self.low is None else self.image.shape[-1] // self.low.shape[-1]

    @property
    def mode(self) -> str:
        if self.low is not None:
            return "upscale"
        if self.extend is not None:
            return "outpaint"
        return "img2img" if self.mask is None else "inpaint"

    def check(self, n: int, channels: int, image_size: int) -> None:
        """Raise a clear error unless the edit fits ``n`` images of a ``channels`` x
        ``image_size`` model."""
        if not 0 < float(self.strength) <= 1:
            raise GenimageError(f"--strength must be in (0, 1], got {self.strength}")
        if isinstance(self.resample, bool) or not isinstance(self.resample, int) or self.resample < 1:
            raise GenimageError(f"--resample must be an integer >= 1, got {self.resample}")
        if self.resample > 1 and self.mask is None and self.low is None:
            raise GenimageError("--resample applies to inpainting, outpainting and upscaling (it re-fits the "
                                "generated part to the given one); give --mask, --extend or --upscale")
        if self.low is not None and (self.low.shape[0] not in (1, n) or self.low.shape[1] != channels
                                     or image_size % self.low.shape[-1]):
            raise GenimageError(f"low-resolution input of shape {tuple(self.low.shape)} does not fit {channels} x "
                                f"{image_size} px images")
        if self.window_overlap is not None:
            self._check_canvas(n, channels, image_size)
            return
        want = (channels, image_size, image_size)
        if self.image.ndim != 4 or tuple(self.image.shape[1:]) != want or self.image.shape[0] not in (1, n):
            raise GenimageError(f"edit image of shape {tuple(self.image.shape)} does not fit: the model makes "
                                f"{channels} x {image_size} x {image_size} images (give 1 or {n} of them)")
        if self.mask is not None:
            if (self.mask.ndim != 4 or tuple(self.mask.shape[1:]) != (1, image_size, image_size)
                    or self.mask.shape[0] not in (1, n)):
                raise GenimageError(f"mask of shape {tuple(self.mask.shape)} does not fit {image_size} x "
                                    f"{image_size} images (give 1 or {n} masks of 1 channel)")
            if not bool(((self.mask == 0) | (self.mask == 1)).all()):
                raise GenimageError("the mask must hold only 0 (keep) and 1 (regenerate)")

    def _check_canvas(self, n: int, channels: int, image_size: int) -> None:
        """The checks of a canvas edit (``window_overlap`` set)."""
        o = self.window_overlap
        if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < image_size:
            raise GenimageError(f"the window overlap must be an integer in 0..{image_size - 1} pixels (the model "
                                f"paints {image_size} px windows), got {o}")
        if self.low is not None or self.mask is None:
            raise GenimageError("painting by windows is for outpainting: give a canvas and its mask")
        im, m = self.image, self.mask
        if (im.ndim != 4 or im.shape[1] != channels or im.shape[0] not in (1, n)
                or min(im.shape[-2:]) < image_size):
            raise GenimageError(f"canvas of shape {tuple(im.shape)} does not fit: it needs {channels} channels and "
                                f"sides of at least the model's {image_size} px (give 1 or {n} of them)")
        if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(im.shape[-2:]) or m.shape[0] not in (1, n):
            raise GenimageError(f"mask of shape {tuple(m.shape)} does not fit the {tuple(im.shape[-2:])} canvas "
                                f"(give 1 or {n} masks of 1 channel)")
        if not bool(((m == 0) | (m == 1)).all()):
            raise GenimageError("the mask must hold only 0 (keep) and 1 (regenerate)")

    def steps_to_run(self, steps: int) -> int:
        """How many of a schedule's ``steps`` steps run (the last ones)."""
        k = min(int(steps * float(self.strength) + 1e-9), steps)
        if k < 1:
            raise GenimageError(f"--strength {self.strength} x --steps {steps} runs no step; "
                                f"raise --strength or --steps (at least {1 / self.strength:.0f} steps)")
        return k

    def rows(self, sl: slice, count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image and mask rows of a batch slice (the single ones repeated)."""
        return _batch_rows(self.image, sl, count), None if self.mask is None else _batch_rows(self.mask, sl, count)

    def low_rows(self, sl: slice, count: int) -> torch.Tensor:
        """The low-resolution inputs of a batch slice (a single one repeated)."""
        return _batch_rows(self.low, sl, count)

    def record(self, i: int) -> dict[str, Any]:
        """What a generation record keeps of the edit of image ``i``: the mode, strength and
        the sha256 of the input's (and mask's) 8-bit pixels."""
        pick = (lambda t: t[0] if t.shape[0] == 1 else t[i])  # noqa: E731
        out: dict[str, Any] = {"mode": self.mode, "strength": float(self.strength)}
        if self.low is not None:
            out["factor"] = self.factor
            out["image_sha256"] = pixels_sha256(pick(self.low))
        else:
            out["image_sha256"] = pixels_sha256(pick(self.image))
        if self.resample > 1:
            out["resample"] = int(self.resample)
        if self.window_overlap is not None:
            out["window_overlap"] = int(self.window_overlap)
        if self.extend is not None:
            out["extend"] = list(self.extend)
        elif self.mask is not None:
            out["mask_sha256"] = pixels_sha256(pick(self.mask) * 2 - 1)
        return out


def _batch_rows(t: torch.Tensor, sl: slice, count: int) -> torch.Tensor:
    """Rows ``sl`` of a per-image tensor, or its single row repeated ``count`` times."""
    return t.expand(count, *t.shape[1:]) if t.shape[0] == 1 else t[sl]


def _fit(img: Image.Image, width: int, height: int) -> Image.Image:
    """Center-crop to the aspect of ``width x height`` and resize (bicubic) to it."""
    w, h = img.size
    if w * height > h * width:  # too wide
        cw = round(h * width / height)
        img = img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
    elif w * height < h * width:
        ch = round(w * height / width)
        img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    return img if img.size == (width, height) else img.resize((width, height), Image.Resampling.BICUBIC)


def _read(source: str | Path | bytes, channels: int, what: str) -> Image.Image:
    """An 8-bit PIL image from a file path or the file's bytes (web uploads)."""
    from genimage.data.image_io import BadImageError, decode_image, load_image

    name = "the upload" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            return decode_image(bytes(source), channels=channels)[0]
        return load_image(source, channels=channels)[0]
    except (BadImageError, OSError) as e:
        raise GenimageError(f"cannot read the {what} {name}: {e}") from None


def load_edit_image(source: str | Path | bytes, image_size: int, channels: int) -> torch.Tensor:
    """``(1, C, S, S)`` in ``[-1, 1]`` from an image file (or its bytes), center-cropped and
    resized to the model's size."""
    from genimage.data.image_io import pil_to_tensor

    return pil_to_tensor(_fit(_read(source, channels, "input image"), image_size, image_size))[None]


def load_mask(source: str | Path | bytes, image_size: int) -> torch.Tensor:
    """``(1, 1, S, S)`` of 0 / 1 from a mask image (or its bytes): white (>= 128) = regenerate,
    black = keep (the convention of diffusers and most editors); center-cropped and resized
    (nearest)."""
    path = "the upload" if isinstance(source, (bytes, bytearray)) else source
    img = _read(source, 1, "mask")
    w, h = img.size
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    img = img.resize((image_size, image_size), Image.Resampling.NEAREST)
    mask = (torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8) >= 128).float()
    mask = mask.reshape(1, 1, image_size, image_size)
    if not bool(mask.any()):
        raise GenimageError(f"the mask {path} is all black (keep everything): nothing to inpaint")
    return mask


def require_edit_inputs(info: dict[str, Any], init, mask) -> str:
    """The mode of a recorded edit (``info``, a record's ``edit`` entry), after checking that
    replay was given the input (``init``) and, for inpainting, the ``mask`` it needs."""
    mode = info.get("mode", "img2img")
    if init is None:
        need = "--init IMAGE --mask MASK" if mode == "inpaint" else "--init IMAGE"
        raise GenimageError(f"this image is an edit ({mode}); pass {need}: the input(s) it was made from")
    if mode == "inpaint" and mask is None:
        raise GenimageError("this image is an inpainting edit; pass --mask MASK as well as --init")
    return mode


def parse_extend(text: str) -> tuple[int, int, int, int]:
    """``"L,T,R,B"`` (or one number for all four sides) -> four non-negative pixel counts."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 4
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0:
        raise GenimageError(f"--extend takes LEFT,TOP,RIGHT,BOTTOM pixel counts >= 0 (or one number), got {text!r}")
    return values  # type: ignore[return-value]


def outpaint_canvas(image: torch.Tensor, left: int, top: int, right: int, bottom: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom out: shrink ``image`` ``(1, C, S, S)`` into the box that leaves ``left, top, right,
    bottom`` pixels free at the model's size ``S`` (aspect kept, centred in the box), and
    return ``(canvas, mask)`` with the free pixels masked for inpainting."""
    s = image.shape[-1]
    if min(left, top, right, bottom) < 0 or left + right >= s or top + bottom >= s:
        raise GenimageError(f"--extend {left},{top},{right},{bottom} leaves no room for the image in {s} x {s}")
    if left + top + right + bottom == 0:
        raise GenimageError("--extend 0,0,0,0 adds no pixels; give the border to fill (LEFT,TOP,RIGHT,BOTTOM)")
    box_w, box_h = s - left - right, s - top - bottom
    side = min(box_w, box_h)
    small = torch.nn.functional.interpolate(image, size=(side, side), mode="bicubic", align_corners=False,
                                            antialias=True).clamp(-1, 1)
    x0, y0 = left + (box_w - side) // 2, top + (box_h - side) // 2
    canvas = torch.zeros_like(image)
    canvas[..., y0:y0 + side, x0:x0 + side] = small
    mask = torch.ones(1, 1, s, s)
    mask[..., y0:y0 + side, x0:x0 + side] = 0
    return canvas, mask


def build_edit(source: str | Path | bytes, image_size: int, channels: int, *, mask: str | Path | bytes | None = None,
               extend: tuple[int, int, int, int] | None = None, upscale: int | None = None,
               strength: float | None = None, resample: int = 1) -> EditSpec:
    """The :class:`EditSpec` of an input image file (or its bytes) for a model of
    ``channels`` x ``image_size``: inpainting with ``mask``, outpainting with ``extend``,
    super-resolution by ``upscale``, else img2img. ``strength`` defaults to 0.6 for img2img
    and 1.0 otherwise. The command line, the web service and replay all build edits here."""
    if sum(v is not None for v in (mask, extend, upscale)) > 1:
        raise GenimageError("give one of --mask (inpaint), --extend (outpaint) or --upscale, not several")
    if upscale is not None:
        if upscale < 2 or image_size % upscale:
            raise GenimageError(f"--upscale must be a factor >= 2 that divides the model's {image_size} px, "
                                f"got {upscale}")
        low = load_edit_image(source, image_size // upscale, channels)
        return EditSpec.upscale(low, image_size, 1.0 if strength is None else strength, resample)
    init = load_edit_image(source, image_size, channels)
    if extend is not None:
        canvas, canvas_mask = outpaint_canvas(init, *extend)
        return EditSpec(canvas, 1.0 if strength is None else strength, canvas_mask, tuple(extend), resample)
    if mask is not None:
        return EditSpec(init, 1.0 if strength is None else strength, load_mask(mask, image_size), resample=resample)
    return EditSpec(init, 0.6 if strength is None else strength, resample=resample)

