"""Spatial control at sampling: a control model, control images and a scale.

:class:`ControlSpec` is what :func:`genimage.generation.generate` takes as ``control=``: it
wraps the base denoiser (:func:`genimage.models.control.controlled_denoiser`) *inside*
classifier-free guidance, inpainting and every sampler, so those run unchanged: both CFG
branches see the control image, as in ControlNet's sampling (Zhang et al. 2023, Sec. 3.4).

Control images (:func:`load_control_image`): a PNG (or any image PIL reads) of the kind the
control model was trained on (:mod:`genimage.editing.control_maps`):

* ``edges`` / ``sketch``: a grey line drawing, white lines on black (an RGB file whose three
  channels are equal is read as grey; a colour image is refused);
* ``segmentation``: RGB, channel ``k`` the mask of the prompt's object ``k``.

Resize policy: the image must be square; the model's size (32 px for ``shapes``) is used as
is, an integer multiple of it (64, 96, ... px) is box-averaged down to it; any other size is
refused with one line (no silent stretching or cropping of a layout).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genimage.errors import GenimageError

DEFAULT_CONTROL_MODEL = "shapes-control"
"""The bundled control model (edges and sketch) of the bundled ``shapes`` model."""


def hint_sha256(hint: torch.Tensor) -> str:
    """sha256 of a control image's 8-bit pixels (``(C, S, S)`` in [0, 1], as saved to PNG)."""
    pixels = (hint.float().clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy()
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def hint_from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(H, W, C)`` -> float ``(C, H, W)`` in [0, 1]."""
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0


def load_control_image(path: str | Path, kind: str, size: int) -> torch.Tensor:
    """Read a control image file as ``(C, size, size)`` in [0, 1] for control ``kind``.

    Args:
        path: Image file.
        kind: A name of :data:`~genimage.editing.control_maps.CONTROL_KINDS`.
        size: The model's image side (the control image's side after the resize policy of
            the module docstring).

    Raises:
        GenimageError: Unreadable file, wrong kind (colour image for a line map, grey for a
            segmentation), not square, or a side that is not a multiple of ``size``.
    """
    from PIL import Image

    from genimage.editing.control_maps import CONTROL_KINDS

    spec = CONTROL_KINDS.get(kind)
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise GenimageError(f"control image not found: {path}") from None
    except Exception as exc:
        raise GenimageError(f"{path} is not a readable image: {exc}") from None
    h, w = rgb.shape[:2]
    if h != w or h % size:
        raise GenimageError(f"control image {path} is {w}x{h}; it must be square, {size}x{size} or a multiple "
                            f"(e.g. {2 * size}x{2 * size}), like the image it lays out")
    spread = int(rgb.max()) if rgb.size else 0
    grey = bool((np.abs(rgb.astype(np.int16) - rgb[..., :1]) <= 8).all())
    if spec.channels == 1:
        if not grey:
            raise GenimageError(f"control image {path} is a colour image, not a line drawing (a {kind} map is white lines "
                                f"on black); "
                                f"make one with `genimage control-map IMAGE --kind {kind}` or pass the right "
                                f"--control-kind")
        array = rgb[..., :1]
    else:
        if grey and spread > 0:
            raise GenimageError(f"control image {path} is grey, not a segmentation map (R, G, B = masks of the "
                                f"prompt's first, second and third object); pass --control-kind edges or sketch")
        array = rgb
    hint = hint_from_uint8(array)
    if h != size:
        hint = torch.nn.functional.avg_pool2d(hint[None], h // size)[0]
    return hint


@dataclass
class ControlSpec:
    """Spatial control for :func:`genimage.generation.generate`.

    Attributes:
        loaded: The control model (:class:`~genimage.models.control.LoadedControl`).
        hint: Control images ``(1 or N, C, S, S)`` in [0, 1] (one for every image, or one each).
        kind: The control kind of ``hint`` (one of the model's ``kinds``).
        scale: Control scale (0 = the base model alone; 1 = as trained).
    """

    loaded: Any
    hint: torch.Tensor
    kind: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        from genimage.models.control import check_hint

        cfg = self.loaded.config
        if self.kind not in cfg.kinds:
            raise GenimageError(f"control model {self.loaded.ref} takes {', '.join(cfg.kinds)} maps, "
                                f"not {self.kind!r}")
        self.scale = float(self.scale)
        if not np.isfinite(self.scale) or self.scale < 0:
            raise GenimageError(f"--control-scale must be a number >= 0, got {self.scale}")
        self.hint = check_hint(self.hint, cfg)

    def check(self, n: int, base_sha256: str) -> None:
        """Raise unless the spec fits ``n`` images of the base with weights ``base_sha256``."""
        if self.hint.shape[0] not in (1, n):
            raise GenimageError(f"got {self.hint.shape[0]} control images for {n} images (give 1 or {n})")
        cfg = self.loaded.config
        if cfg.base_sha256 != base_sha256:
            raise GenimageError(f"control model {self.loaded.ref} was trained for base {cfg.base_model!r} "
                                f"(sha256 {cfg.base_sha256[:12]}...), not this model (sha256 {base_sha256[:12]}...)")

    def rows(self, sl: slice, count: int) -> torch.Tensor:
        return self.hint if self.hint.shape[0] == 1 else self.hint[sl]

    def wrap(self, denoiser, sl: slice, count: int):
        """The controlled denoiser for images ``sl`` of a batch."""
        from genimage.models.control import controlled_denoiser

        param = next(denoiser.parameters(), None)
        module = self.loaded.module
        if param is not None:
            module.to(param.device)
        return controlled_denoiser(denoiser, module, self.rows(sl, count).to(param.device if param is not None
                                                                             else "cpu"), self.scale)

    def record(self, i: int) -> dict[str, Any]:
        """What image ``i``'s generation record keeps of the control."""
        hint = self.hint[0 if self.hint.shape[0] == 1 else i]
        return {"model": self.loaded.ref, "model_sha256": self.loaded.sha256, "kind": self.kind,
                "scale": self.scale, "image_sha256": hint_sha256(hint)}


def _register_wrapper() -> None:
    from genimage.editing.plan import register_wrapper

    @register_wrapper("control", order=40)
    def _control(model, ctx):
        """ControlNet residuals at the network: below guidance (100), so both CFG branches see them."""
        if ctx.control is None:
            return None
        if ctx.edit is not None and getattr(ctx.edit, "window_overlap", None) is not None:
            raise GenimageError("spatial control works on images of the model's size, not on a canvas painted "
                                "window by window (--extend); drop --control or use --extend-mode shrink")
        return ctx.control.wrap(model, ctx.sl, ctx.count)


_register_wrapper()


def build_control(image: str | Path, kind: str | None, model: str | Path | None, scale: float | None,
                  base) -> ControlSpec:
    """A :class:`ControlSpec` from command-line style inputs.

    Args:
        image: Control image file.
        kind: Its kind (default: the control model's first kind).
        model: Control model (bundled name or folder; default :data:`DEFAULT_CONTROL_MODEL`).
        scale: Control scale (default: the control model's).
        base: The base :class:`~genimage.models.io.LoadedModel` (its sha256 must match).
    """
    from genimage.models.control import load_control

    loaded = load_control(model or DEFAULT_CONTROL_MODEL, base_sha256=base.weights_sha256)
    kind = kind or loaded.config.kinds[0]
    if kind not in loaded.config.kinds:
        raise GenimageError(f"control model {loaded.ref} takes {', '.join(loaded.config.kinds)} maps, not {kind!r}")
    hint = load_control_image(image, kind, loaded.config.hint_size)
    return ControlSpec(loaded, hint, kind, loaded.config.scale if scale is None else scale)


def control_from_record(info: dict[str, Any], image: str | Path | None, base) -> ControlSpec:
    """The :class:`ControlSpec` a record's ``control`` entry was made with, from its control
    image file (checked against the recorded sha256 of its pixels)."""
    if image is None:
        raise GenimageError("this image was made with a control image; pass it with --control MAP.png")
    spec = build_control(image, info["kind"], info["model"], float(info["scale"]), base)
    if spec.loaded.sha256 != info.get("model_sha256"):
        raise GenimageError(f"control model {info['model']} is not the one this image was made with "
                            f"(sha256 of its weights differs)")
    if hint_sha256(spec.hint[0]) != info.get("image_sha256"):
        raise GenimageError(f"{image} is not the control image this image was made with (sha256 of its pixels differs)")
    return spec
