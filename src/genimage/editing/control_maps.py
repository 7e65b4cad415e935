"""Control maps for spatial control (ControlNet): edge maps, segmentation maps, sketches.

Three kinds, each a uint8 array ``(H, W, C)`` on 0..255 (what a control PNG holds):

* ``edges`` (1 channel): the Canny edge detector (Canny 1986, "A Computational Approach to
  Edge Detection") of :func:`skimage.feature.canny`, run on each RGB channel with
  ``sigma=`` :data:`CANNY_SIGMA` and OR-ed (a colour edge can vanish in the grey image), white
  edges on black.
* ``segmentation`` (3 channels): exact per-object masks from the shapes renderer
  (:func:`object_masks`); channel ``k`` is the visible part of the caption's object ``k``
  (R = first, G = second, B = third), so the prompt names what each channel holds.
* ``sketch`` (1 channel): a hand-drawn-looking edge map made procedurally from the edges:
  each edge pixel is moved by a smooth random displacement field (up to about one pixel,
  the wobble of a hand-drawn line) and pixels where a second smooth random field is low are
  erased (gaps in the strokes, about :data:`SKETCH_GAP` of the line). Deterministic per seed.

:data:`CONTROL_KINDS` is the registry of kinds: name -> :class:`ControlKind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from genimage.errors import GenimageError
from genimage.registry import Registry

CANNY_SIGMA = 1.0
"""Gaussian smoothing of the Canny detector, in pixels (1 px suits the 32 px shapes scenes)."""

SKETCH_JITTER = 0.9
"""Standard deviation (pixels) of the sketch's smooth displacement field."""

SKETCH_GAP = 0.2
"""Fraction of a sketch's edge pixels erased as gaps."""


@dataclass(frozen=True)
class ControlKind:
    """One kind of control map.

    Attributes:
        name: Registry name.
        channels: Channels of the map (1: a grey line drawing; 3: per-object masks).
        from_image: ``(rgb uint8 (H, W, 3), seed) -> map uint8 (H, W, channels)``, or ``None``
            when the map cannot be computed from pixels alone (segmentation needs the scene).
        description: One line for ``--help`` texts and errors.
    """

    name: str
    channels: int
    from_image: Callable[[np.ndarray, int], np.ndarray] | None
    description: str


CONTROL_KINDS: Registry[ControlKind] = Registry("control kind")


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise GenimageError(f"a control map is made from a uint8 RGB array (H, W, 3), got "
                            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    return image


def edge_mask(image: np.ndarray, sigma: float = CANNY_SIGMA) -> np.ndarray:
    """Canny edges of an RGB image as a bool array ``(H, W)`` (per channel, OR-ed).

    Args:
        image: uint8 ``(H, W, 3)``.
        sigma: Gaussian smoothing in pixels.
    """
    from skimage.feature import canny

    rgb = _check_rgb(image).astype(np.float64) / 255.0
    out = np.zeros(rgb.shape[:2], dtype=bool)
    for c in range(3):
        out |= canny(rgb[..., c], sigma=sigma, low_threshold=0.05, high_threshold=0.15)
    return out


def edges(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """The ``edges`` control map of an RGB image: uint8 ``(H, W, 1)``, 255 on edges.

    Args:
        image: uint8 ``(H, W, 3)``.
        seed: Unused (edges are deterministic); kept for the common signature.
    """
    return (edge_mask(image) * 255).astype(np.uint8)[..., None]


def _smooth_field(rng: np.random.Generator, size: int, cells: int = 4) -> np.ndarray:
    """A smooth random field ``(size, size)`` with unit standard deviation at the grid points:
    normal values on a ``cells + 1`` grid, bilinearly interpolated."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, cells - 1)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]  # (size, cells + 1)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def jitter_lines(lines: np.ndarray, seed: int, jitter: float = SKETCH_JITTER, gap: float = SKETCH_GAP) -> np.ndarray:
    """Make a line drawing look hand-drawn: smooth wobble plus gaps.

    Args:
        lines: bool ``(H, W)`` line pixels.
        seed: Seed of the displacement and gap fields.
        jitter: Displacement standard deviation in pixels.
        gap: Fraction of line pixels erased (where a smooth random field is lowest).

    Returns:
        bool ``(H, W)``.
    """
    h, w = lines.shape
    rng = np.random.default_rng(seed)
    size = max(h, w)
    dx = _smooth_field(rng, size)[:h, :w] * jitter
    dy = _smooth_field(rng, size)[:h, :w] * jitter
    keep = _smooth_field(rng, size, cells=6)[:h, :w]
    ys, xs = np.nonzero(lines)
    if ys.size == 0:
        return np.zeros_like(lines, dtype=bool)
    threshold = np.quantile(keep[ys, xs], gap) if gap > 0 else -np.inf
    stay = keep[ys, xs] >= threshold
    ys, xs = ys[stay], xs[stay]
    ny = np.clip(np.rint(ys + dy[ys, xs]).astype(int), 0, h - 1)
    nx = np.clip(np.rint(xs + dx[ys, xs]).astype(int), 0, w - 1)
    out = np.zeros((h, w), dtype=bool)
    out[ny, nx] = True
    return out


def sketch(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """The ``sketch`` control map of an RGB image: its edges, jittered with gaps; uint8 ``(H, W, 1)``.

    Args:
        image: uint8 ``(H, W, 3)``.
        seed: Seed of the wobble and the gaps (:func:`jitter_lines`).
    """
    return (jitter_lines(edge_mask(image), seed) * 255).astype(np.uint8)[..., None]


def object_masks(scene, supersample: int = 4) -> np.ndarray:
    """Exact visible coverage of each object of a shapes scene: float32 ``(K, H, W)`` in [0, 1].

    Draws each object alone with the renderer's rules (:func:`genimage.data.shapes.render_scene`)
    on the supersampled grid; later objects are drawn over earlier ones, so an occluded part
    belongs to the object on top.

    Args:
        scene: A :class:`genimage.data.shapes.Scene`.
        supersample: The renderer's supersampling factor.
    """
    grid = scene.image_size * supersample
    occupied = np.zeros((grid, grid), dtype=bool)
    full = []
    for obj in scene.objects:
        canvas = Image.new("L", (grid, grid), 0)
        draw = ImageDraw.Draw(canvas)
        x0, y0, x1, y1 = (int(round(v * supersample)) for v in obj.bbox)
        if obj.shape == "square":
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
        elif obj.shape == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=255)
        else:
            draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=255)
        full.append(np.asarray(canvas) > 0)
    visible = []
    for k in reversed(range(len(full))):  # the last drawn is on top
        mine = full[k] & ~occupied
        occupied |= full[k]
        visible.append(mine)
    visible.reverse()
    s = scene.image_size
    return np.stack([m.reshape(s, supersample, s, supersample).mean((1, 3)) for m in visible]).astype(np.float32)


def segmentation(scene, supersample: int = 4, channels: int = 3) -> np.ndarray:
    """The ``segmentation`` control map of a shapes scene: uint8 ``(H, W, 3)``, channel ``k`` the
    coverage (0..255) of the caption's object ``k``.

    Args:
        scene: A :class:`genimage.data.shapes.Scene` (1-3 objects).
        supersample: The renderer's supersampling factor.
        channels: Map channels (objects beyond them are an error).
    """
    masks = object_masks(scene, supersample)
    if len(masks) > channels:
        raise GenimageError(f"a segmentation map holds at most {channels} objects, the scene has {len(masks)}")
    out = np.zeros((scene.image_size, scene.image_size, channels), dtype=np.uint8)
    for k, m in enumerate(masks):
        out[..., k] = np.rint(m * 255).astype(np.uint8)
    return out


CONTROL_KINDS.register("edges")(ControlKind("edges", 1, edges, "Canny edge map (white edges on black)"))
CONTROL_KINDS.register("sketch")(ControlKind("sketch", 1, sketch, "hand-drawn-style line drawing (white on black)"))
CONTROL_KINDS.register("segmentation")(ControlKind(
    "segmentation", 3, None, "per-object masks: R = the prompt's first object, G = second, B = third"))


def scene_control(kind: str, scene, image: np.ndarray, seed: int = 0, supersample: int = 4) -> np.ndarray:
    """The ``kind`` map of a rendered shapes scene (uint8 ``(H, W, channels)``).

    Args:
        kind: A name of :data:`CONTROL_KINDS`.
        scene: The :class:`~genimage.data.shapes.Scene` (for ``segmentation``).
        image: Its rendering, uint8 ``(H, W, 3)`` (for ``edges`` / ``sketch``).
        seed: Seed of a ``sketch``'s randomness.
        supersample: The renderer's supersampling factor.
    """
    spec = CONTROL_KINDS.get(kind)
    if spec.from_image is None:
        return segmentation(scene, supersample)
    return spec.from_image(image, seed)
