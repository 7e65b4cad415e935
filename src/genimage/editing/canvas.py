"""Edits at the input's own size: a model of native size S edits an input of any W x H.

:class:`~genimage.editing.spec.EditSpec` is an edit at the model's size. A
:class:`CanvasEdit` maps an input image of any size onto such model-size edits and maps the
results back, so the output has the input's size and aspect (``--upscale F``: F times it):

* ``native``: the input is already S x S; one model-size edit, nothing resized.
* ``resize`` (img2img, inpainting, outpainting): the whole input (for outpainting: the input
  on its enlarged canvas) is resized to S x S (bicubic, antialiased; the aspect is squashed
  for the model and restored after), edited, and resized back to W x H.
* ``composite`` (every masked edit, native or resized): the result is pasted into the
  full-resolution input through the full-resolution mask, so every unmasked pixel is the
  input's own (before the saved file's invisible watermark, which moves pixels by at most 2
  of 255 levels; ``--no-watermark`` keeps them exact). Blending generated content back
  into the original is the usual practice of masked editing (e.g. Avrahami et al. 2022,
  "Blended Diffusion", Sec. 4: the unmasked region is taken from the input).
* ``windows`` (outpainting, the default ``--extend-mode windows``): the enlarged canvas is
  resized so that the input's shorter side is S (a no-op for an S x S input) and painted by
  S x S windows that overlap, their predictions averaged at every step (MultiDiffusion,
  :mod:`genimage.editing.windows`), so the output is larger than the model paints at once;
  then resized to the canvas at the input's scale and composited. ``--extend-mode shrink``
  is the ``resize`` fit above (the whole canvas squashed into one S x S window).
* ``tiles`` (``--upscale F``): the input is cut into overlapping low-resolution tiles of the
  model's low-resolution side ``s = S / F``; each tile is super-resolved to S x S (DDNM, see
  :meth:`EditSpec.upscale`), and the tiles are blended with weights that ramp linearly across
  the overlaps (the averaging of overlapping windows of MultiDiffusion, Bar-Tal et al. 2023,
  Eq. 5, applied once to the results). The weights are constant over each F x F block, so
  the blend's F x F block averages are weighted means of the tiles' (which DDNM keeps close
  to the input's pixels): blending adds no inconsistency of its own.

Everything here is deterministic given the input file and the record, so ``genimage replay
OUT --init IN [--mask M]`` rebuilds the same model-size edits, seeds and blend
(:func:`canvas_from_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from genimage.editing.spec import EditSpec, _read, pixels_sha256, require_edit_inputs
from genimage.errors import GenimageError


def load_full_image(source: str | Path | bytes, channels: int) -> torch.Tensor:
    """``(1, C, H, W)`` in ``[-1, 1]``: an input image file (or its bytes) at its own size."""
    from genimage.data.image_io import pil_to_tensor

    return pil_to_tensor(_read(source, channels, "input image"))[None]


def load_full_mask(source: str | Path | bytes, width: int, height: int) -> torch.Tensor:
    """``(1, 1, H, W)`` of 0 / 1 (white >= 128 = regenerate) at the input's size; a mask of
    another size is resized to it (nearest)."""
    from PIL import Image

    img = _read(source, 1, "mask")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.NEAREST)
    mask = (torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8) >= 128).float().reshape(1, 1, height, width)
    if not bool(mask.any()):
        name = "the upload" if isinstance(source, (bytes, bytearray)) else source
        raise GenimageError(f"the mask {name} is all black (keep everything): nothing to inpaint")
    return mask


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of ``(N, C, h, w)`` (antialiased when shrinking), clamped to ``[-1, 1]``."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x.float(), size=(height, width), mode="bicubic", align_corners=False,
                         antialias=True).clamp(-1, 1)


def _mask_to(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A full-resolution 0/1 mask at the model's size: 1 wherever any covered pixel is 1
    (so the regenerated region covers the requested one)."""
    if tuple(mask.shape[-2:]) == (size, size):
        return mask
    return (F.interpolate(mask, size=(size, size), mode="area") > 0).float()


def tile_seed(seed: int, tile: int) -> int:
    """Seed of tile ``tile`` of the output of seed ``seed`` (distinct tiles, distinct outputs)."""
    return ((int(seed) << 20) + int(tile)) % (1 << 63)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``length >= tile`` pixels, adjacent
    tiles sharing at least ``overlap`` pixels, spread evenly from 0 to ``length - tile``."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    n = max(n, 2)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


def _ramp(length: int, starts: list[int], tile: int, k: int) -> torch.Tensor:
    """1-D blend weight of tile ``k`` over its ``tile`` pixels: rising linearly over the part
    shared with the previous tile, falling over the part shared with the next one."""
    w = torch.ones(tile, dtype=torch.float64)
    pos = torch.arange(tile, dtype=torch.float64)
    if k > 0:
        shared = starts[k - 1] + tile - starts[k]
        if shared > 0:
            w = torch.minimum(w, (pos + 1) / (shared + 1))
    if k < len(starts) - 1:
        shared = starts[k] + tile - starts[k + 1]
        if shared > 0:
            w = torch.minimum(w, (tile - pos) / (shared + 1))
    return w


@dataclass
class CanvasEdit:
    """An edit of a W x H input by a model of side S, and how its results go back.

    Attributes:
        spec: The model-size edit: one row, or one row per tile (``fit == "tiles"``).
        mode: ``img2img`` | ``inpaint`` | ``outpaint`` | ``upscale``.
        fit: ``native`` | ``resize`` | ``tiles`` | ``windows``.
        source: ``(1, C, H', W')`` the full-resolution input (outpainting: the enlarged canvas,
            zeros in the new border), in ``[-1, 1]``.
        mask: ``(1, 1, H', W')`` full-resolution mask (1 = generated) for the composite, or ``None``.
        input_size: ``(W, H)`` of the input file.
        out_size: ``(W_out, H_out)`` of the result.
        info: What the record keeps (see :meth:`record`).
        tiles: ``fit == "tiles"``: ``(y, x)`` low-resolution start of each tile, the tile side
            ``s``, the factor ``F`` and the padded low-resolution size; ``fit == "windows"``:
            ``{"window": S}``.
    """

    spec: EditSpec
    mode: str
    fit: str
    source: torch.Tensor
    mask: torch.Tensor | None
    input_size: tuple[int, int]
    out_size: tuple[int, int]
    info: dict[str, Any] = field(default_factory=dict)
    tiles: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        """Model-size images per output."""
        return int(self.spec.image.shape[0])

    def network_images(self, grid: int = 1) -> int:
        """Model-size images the network evaluates per output and per step: the tiles of an
        upscaling, the windows of a window-painted canvas (``grid``: the model's latent factor;
        the count of :class:`~genimage.editing.windows.WindowedDenoiser`), else 1."""
        if self.fit == "tiles":
            return self.rows
        if self.fit == "windows":
            s = self.tiles["window"] // grid
            o = (self.spec.window_overlap or 0) // grid
            h, w = (v // grid for v in self.spec.image.shape[-2:])
            return len(tile_starts(h, s, o)) * len(tile_starts(w, s, o))
        return 1

    def seeds(self, seed: int) -> list[int]:
        """Seeds of the model-size images of the output of ``seed`` (just ``seed`` unless tiled)."""
        return [int(seed)] if self.fit != "tiles" else [tile_seed(seed, t) for t in range(self.rows)]

    def batch_spec(self, n: int) -> EditSpec:
        """The model-size edit of ``n`` outputs (``n * rows`` images; the single row shared)."""
        if self.rows == 1:
            return self.spec
        rep = lambda t: None if t is None else t.repeat(n, 1, 1, 1)  # noqa: E731
        s = self.spec
        return EditSpec(rep(s.image), s.strength, rep(s.mask), s.extend, s.resample, rep(s.low), s.window_overlap)

    def assemble(self, images: torch.Tensor) -> torch.Tensor:
        """The output ``(C, H_out, W_out)`` from the :attr:`rows` model-size results ``(rows, C, S, S)``."""
        images = images.float().cpu()
        if self.fit == "tiles":
            return self._blend(images)
        w, h = self.out_size
        out = _resize(images[:1], h, w)[0]
        if self.mask is not None:
            out = torch.where(self.mask[0].bool(), out, self.source[0].float())
        return out

    def _blend(self, images: torch.Tensor) -> torch.Tensor:
        t = self.tiles
        f, s = t["factor"], t["tile"]
        lh, lw = t["padded"]
        c = images.shape[1]
        acc = torch.zeros(c, lh * f, lw * f, dtype=torch.float64)
        norm = torch.zeros(1, lh * f, lw * f, dtype=torch.float64)
        ys, xs = t["ys"], t["xs"]
        for i, (ky, kx) in enumerate((a, b) for a in range(len(ys)) for b in range(len(xs))):
            # weights constant over each f x f block: block averages are weighted means of the tiles'
            wy = _ramp(lh, ys, s, ky).repeat_interleave(f)
            wx = _ramp(lw, xs, s, kx).repeat_interleave(f)
            wgt = (wy[:, None] * wx[None, :])[None]
            y0, x0 = ys[ky] * f, xs[kx] * f
            acc[:, y0:y0 + s * f, x0:x0 + s * f] += wgt * images[i].double()
            norm[:, y0:y0 + s * f, x0:x0 + s * f] += wgt
        w, h = self.out_size
        return (acc / norm).float()[:, :h, :w].clamp(-1, 1)

    def describe(self) -> str:
        """One line: what was done to fit the model."""
        (w, h), (wo, ho) = self.input_size, self.out_size
        s = self.spec.image.shape[-1]
        if self.fit == "tiles":
            t = self.tiles
            return (f"{w}x{h} -> {wo}x{ho}: {self.rows} tiles of {t['tile']}px -> {s}px "
                    f"(overlap {t['overlap']}px, blended)")
        cw, ch = self.source.shape[-1], self.source.shape[-2]
        what = "at the model's size" if self.fit == "native" else f"resized {cw}x{ch} -> {s}x{s} -> {wo}x{ho}"
        if self.fit == "windows":
            sh, sw = self.spec.image.shape[-2:]
            what = (f"painted at {sw}x{sh} by {self.tiles['window']}px windows (overlap {self.spec.window_overlap}px)"
                    + (f", resized to {wo}x{ho}" if (sw, sh) != (wo, ho) else ""))
        if self.mode == "outpaint":
            what = f"canvas {cw}x{ch}, " + what
        if self.mask is not None:
            what += ", composited into the input (unmasked pixels kept)"
        return f"{w}x{h} -> {wo}x{ho}: {what}"

    def record(self, i: int = 0) -> dict[str, Any]:
        """The record's ``edit`` entry: the model-size edit's mode and settings, with the
        sha256 of the full-size input's (and mask's) pixels and ``canvas`` (fit, sizes, tiles)."""
        out = self.spec.record(i if self.rows == 1 else 0)
        out.pop("image_sha256", None)
        out.pop("mask_sha256", None)
        out.update(self.info)
        return out


def _sha(t: torch.Tensor) -> str:
    return pixels_sha256(t)


#: ``--extend-mode`` choices: paint the enlarged canvas by model-size windows, or squash it into one.
EXTEND_MODES = ("windows", "shrink")


def build_canvas_edit(source: str | Path | bytes, image_size: int, channels: int, *,
                      mask: str | Path | bytes | None = None, extend: tuple[int, int, int, int] | None = None,
                      upscale: int | None = None, strength: float | None = None, resample: int = 1,
                      overlap: int | None = None, extend_mode: str = "windows", grid: int = 1) -> CanvasEdit:
    """The :class:`CanvasEdit` of an input file (or its bytes) of any size, for a model of
    ``channels`` x ``image_size``: inpainting with ``mask`` (any size; resized to the input's
    by nearest neighbour), outpainting with ``extend`` (LEFT, TOP, RIGHT, BOTTOM pixels of new
    border at the input's scale), super-resolution by ``upscale`` (the output is ``upscale``
    times the input's size), else img2img. ``strength`` defaults to 0.6 for img2img and 1.0
    otherwise; ``overlap`` (tiles, low-resolution pixels) to a quarter of the tile side.

    Outpainting by ``extend_mode``: ``"windows"`` (default) paints the enlarged canvas at the
    scale where the input's shorter side is the model's size, by model-size windows that
    overlap by ``overlap`` pixels (default half the model's side; :mod:`genimage.editing.windows`),
    so the model paints at its own scale at any output size; ``"shrink"`` resizes the whole
    canvas to one model-size square (the input shrinks into it). ``grid``: the canvas sides
    are multiples of it (a latent model's downsampling factor)."""
    if sum(v is not None for v in (mask, extend, upscale)) > 1:
        raise GenimageError("give one of --mask (inpaint), --extend (outpaint) or --upscale, not several")
    if extend_mode not in EXTEND_MODES:
        raise GenimageError(f"--extend-mode must be one of {', '.join(EXTEND_MODES)}, got {extend_mode!r}")
    full = load_full_image(source, channels)
    h, w = full.shape[-2:]
    info: dict[str, Any] = {"image_sha256": _sha(full[0])}
    canvas = {"input_size": [int(w), int(h)]}
    if upscale is not None:
        return _tiles(full, image_size, upscale, 1.0 if strength is None else strength, resample, overlap, info,
                      canvas)
    full_mask = None
    mode = "img2img"
    src = full
    if extend is not None:
        left, top, right, bottom = (int(v) for v in extend)
        if min(left, top, right, bottom) < 0:
            raise GenimageError(f"--extend takes pixel counts >= 0, got {extend}")
        if left + top + right + bottom == 0:
            raise GenimageError("--extend 0,0,0,0 adds no pixels; give the border to fill (LEFT,TOP,RIGHT,BOTTOM)")
        src = torch.zeros(1, channels, h + top + bottom, w + left + right)
        src[..., top:top + h, left:left + w] = full
        full_mask = torch.ones(1, 1, *src.shape[-2:])
        full_mask[..., top:top + h, left:left + w] = 0
        mode = "outpaint"
    elif mask is not None:
        full_mask = load_full_mask(mask, w, h)
        info["mask_sha256"] = _sha(full_mask[0] * 2 - 1)
        mode = "inpaint"
    ch, cw = src.shape[-2:]
    if extend is not None and extend_mode == "windows":
        return _windows(src, full_mask, extend, image_size, grid, 1.0 if strength is None else strength, resample,
                        overlap, info, canvas, (int(w), int(h)))
    fit = "native" if (ch, cw) == (image_size, image_size) else "resize"
    small = _resize(src, image_size, image_size)
    default = 0.6 if mode == "img2img" else 1.0
    st = default if strength is None else strength
    small_mask = None if full_mask is None else _mask_to(full_mask, image_size)
    spec = EditSpec(small, st, small_mask, tuple(int(v) for v in extend) if extend is not None else None, resample)
    canvas.update(fit=fit, size=[int(cw), int(ch)], composite=full_mask is not None)
    info["canvas"] = canvas
    return CanvasEdit(spec, mode, fit, src, full_mask, (int(w), int(h)), (int(cw), int(ch)), info)


def _windows(src, full_mask, extend, image_size, grid, strength, resample, overlap, info, canvas,
             input_size) -> CanvasEdit:
    """The outpainting canvas ``src`` (input at its own scale, zeros in the new border) as a
    canvas edit painted by windows: resized so that the input's shorter side is the model's
    ``image_size`` (sides rounded to multiples of ``grid``, at least ``image_size``)."""
    w, h = input_size
    o = image_size // 2 if overlap is None else int(overlap)
    if not 0 <= o < image_size:
        raise GenimageError(f"--overlap must be in 0..{image_size - 1} pixels (the model's windows are "
                            f"{image_size} px), got {o}")
    scale = image_size / min(w, h)
    ch, cw = src.shape[-2:]

    def side(n: int) -> int:
        return max(image_size, int(round(n * scale / grid)) * grid)

    wh, ww = side(ch), side(cw)
    small = _resize(src, wh, ww)
    small_mask = (F.interpolate(full_mask, size=(wh, ww), mode="area") > 0).float()
    spec = EditSpec(small, strength, small_mask, tuple(int(v) for v in extend), resample, window_overlap=o)
    fit = "windows"
    canvas.update(fit=fit, size=[int(cw), int(ch)], composite=True, extend_mode="windows", overlap=o,
                  work_size=[int(ww), int(wh)])
    info["canvas"] = canvas
    return CanvasEdit(spec, "outpaint", fit, src, full_mask, (int(w), int(h)), (int(cw), int(ch)), info,
                      {"window": image_size})


def _tiles(full, image_size, factor, strength, resample, overlap, info, canvas) -> CanvasEdit:
    if factor < 2 or image_size % factor:
        raise GenimageError(f"--upscale must be a factor >= 2 that divides the model's {image_size} px, got {factor}")
    s = image_size // factor
    o = max(1, s // 4) if overlap is None else int(overlap)
    if not 0 <= o < s:
        raise GenimageError(f"tile overlap must be in 0..{s - 1} low-resolution pixels, got {o}")
    h, w = full.shape[-2:]
    lh, lw = max(h, s), max(w, s)
    padded = F.pad(full, (0, lw - w, 0, lh - h), mode="replicate") if (lh, lw) != (h, w) else full
    ys, xs = tile_starts(lh, s, o), tile_starts(lw, s, o)
    low = torch.cat([padded[..., y:y + s, x:x + s] for y in ys for x in xs])
    spec = EditSpec.upscale(low, image_size, strength, resample)
    canvas.update(fit="tiles", size=[int(w * factor), int(h * factor)], tile=s, overlap=o, tiles=len(ys) * len(xs))
    info["canvas"] = canvas
    tiles = {"factor": factor, "tile": s, "overlap": o, "ys": ys, "xs": xs, "padded": (lh, lw)}
    return CanvasEdit(spec, "upscale", "tiles", full, None, (int(w), int(h)), (int(w * factor), int(h * factor)),
                      info, tiles)


def _named(source, default: str) -> str:
    """A file's path for an error line, or ``default`` for uploaded bytes (never their content)."""
    return default if isinstance(source, (bytes, bytearray)) else str(source)


def canvas_from_record(info: dict[str, Any], init: str | Path | bytes | None, mask: str | Path | bytes | None,
                       image_size: int, channels: int, grid: int = 1) -> CanvasEdit:
    """The :class:`CanvasEdit` an image's record (``edit`` entry with ``canvas``) was made
    with, rebuilt from its input files (or their bytes, as the service receives them) and
    checked against the recorded sha256s."""
    mode = require_edit_inputs(info, init, mask)
    canvas = info["canvas"]
    edit = build_canvas_edit(init, image_size, channels, mask=mask if mode == "inpaint" else None,
                             extend=tuple(info["extend"]) if mode == "outpaint" else None,
                             upscale=int(info["factor"]) if mode == "upscale" else None,
                             strength=float(info.get("strength", 1.0)), resample=int(info.get("resample", 1)),
                             overlap=canvas.get("overlap"), extend_mode=canvas.get("extend_mode", "shrink"),
                             grid=grid)
    if canvas.get("work_size") is not None and list(edit.spec.image.shape[-1:-3:-1]) != canvas["work_size"]:
        raise GenimageError(f"this image was painted on a {canvas['work_size']} canvas; this model paints "
                            f"{list(edit.spec.image.shape[-1:-3:-1])}: replay it with the model it was made with")
    if edit.info.get("mask_sha256") != info.get("mask_sha256"):
        raise GenimageError(f"{_named(mask, 'the uploaded mask')} is not the mask this image was made with "
                            f"(sha256 of its pixels differs)")
    if edit.info["image_sha256"] != info.get("image_sha256"):
        raise GenimageError(f"{_named(init, 'the uploaded image')} is not the input this image was made from "
                            f"(sha256 of its pixels differs)")
    return edit


def run_canvas_edit(pipe, edit: CanvasEdit, seeds: list[int], labels=None, prompts=None, negative=None,
                    options=None, batch_size: int = 64, callback=None) -> list[torch.Tensor]:
    """Run ``edit`` for every seed with ``pipe`` (a :class:`~genimage.pipeline.Pipeline`) and
    return one assembled ``(C, H_out, W_out)`` output per seed. Labels and prompts are per seed."""
    k = edit.rows
    row_seeds = [s for seed in seeds for s in edit.seeds(seed)]
    expand = lambda v: None if v is None else [x for x in v for _ in range(k)]  # noqa: E731
    images = pipe(row_seeds, labels=expand(labels), prompts=expand(prompts), negative=negative, options=options,
                  batch_size=batch_size, callback=callback, edit=edit.batch_spec(len(seeds)))
    return [edit.assemble(images[i * k:(i + 1) * k]) for i in range(len(seeds))]


def canvas_records(pipe, edit: CanvasEdit, seeds: list[int], labels=None, prompts=None, negative=None, options=None):
    """The generation record of each output: the pipeline's, with the output's size, the
    canvas edit entry and the watermark entry of the output's shape."""
    import dataclasses

    from genimage.provenance.watermark import record_entry

    base = pipe.records(seeds, labels, prompts, negative, options, edit=edit.spec if edit.rows == 1 else None)
    w, h = edit.out_size
    mark = record_entry(pipe.config.channels, h, w, pipe.watermark)
    return [dataclasses.replace(r, width=w, height=h, edit=edit.record(), watermark=mark) for r in base]

