"""Score an image against a ``shapes`` caption: object count, colour-shape binding, position.

A rule-based stand-in for GenEval's detector-based checks (Ghosh et al., 2023, "GenEval: An
Object-Focused Framework for Evaluating Text-to-Image Alignment", Sec. 3: counting, colours,
position), exact enough on the ``shapes`` palette to need no learned model:

1. **Pixels.** Each pixel ``p`` is explained as a mix of the background ``b`` and one
   palette colour ``c``: ``p ~ b + a (c - b)`` with ``a`` in ``[0, 1]``; the colour whose
   segment ``b -> c`` passes closest to ``p`` wins (so anti-aliased edges, which lie on
   that segment, are not mistaken for another colour), and ``a`` is the pixel's coverage.
   Pixels with ``a >= 0.5`` are object pixels.
2. **Objects.** 8-connected components of object pixels of one colour; components
   covering less than ``min_area`` of the image are noise and dropped.
3. **Box.** The component grown by one pixel (its anti-aliased rim) gives a coverage map,
   passed through a symmetric noise floor (:data:`NOISE_FLOOR`; 0.5 stays 0.5). Its
   column-wise maximum gives the horizontal extent with sub-pixel edges
   (``x0 = first + 1 - cov[first]``, ``x1 = last + cov[last]``); rows likewise. A
   triangle's apex and base width come instead from a line fitted to its row areas (its
   thin apex and base corners barely cover their pixels). The centre is the box centre,
   as in the dataset's relation rule.
4. **Shape.** ``fill = area / (w h)`` (circle pi/4 ~ 0.785, square 1, triangle 0.5) and
   ``drop = (centroid_y - y0) / h`` (1/2 for circles and squares, 2/3 for an apex-up
   triangle, whose mass sits low). Triangle if ``drop > 0.58`` or ``fill < 0.64``;
   otherwise square if ``fill > 0.89``, else circle. (Measured on dataset images at
   24-64 px: circles 0.75-0.85, squares >= 0.99, triangle drop >= 0.61.)

Limits: every non-background blob is given its nearest palette colour, even an off-palette
one; two touching objects of one colour are one object.

Three-object captions ``"<A> <rel1> <B> <rel2> <C>"`` assert *A rel1 B* and *B rel2 C*.
Each relation is checked on its own (``relations_ok``: some detection matching its subject
and a different one matching its object satisfy it), and ``position_ok`` needs one
consistent assignment: three distinct detections matching A, B and C with both relations
holding through the same B.

Position rule: by default (``min_offset=0``) a relation holds when the subject's centre is
offset from the object's centre in the named direction and by more than along the other
axis, a looser rule than the dataset's (which also requires at least 20% of the side;
pass ``min_offset=genimage.data.shapes.MIN_RELATION_OFFSET`` for that). Generated images
rarely hit the exact layout, and the sign plus dominant axis is what the caption asserts.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from genimage.data.shapes import BACKGROUND, PALETTE, CaptionSpec, ObjectSpec, parse_caption, relation_holds
from genimage.errors import GenimageError

_COLOURS = tuple(PALETTE)
_BG = np.array(BACKGROUND, dtype=np.float32)
_DIRS = np.array([PALETTE[c] for c in _COLOURS], dtype=np.float32) - _BG  # (K, 3)
_DIR_NORM2 = (_DIRS**2).sum(1)  # (K,)
_EIGHT = np.ones((3, 3), dtype=bool)
NOISE_FLOOR = 0.1
"""Coverage below this is treated as background noise (and above ``1 - NOISE_FLOOR`` as full)."""


@dataclasses.dataclass(frozen=True)
class DetectedObject:
    """One object found in an image.

    Attributes:
        colour: Nearest palette colour name.
        shape: ``"circle"``, ``"square"`` or ``"triangle"``.
        bbox: Estimated ``(x0, y0, x1, y1)`` in pixels, sub-pixel, exclusive ends.
        area: Coverage-weighted area in pixels.
        fill: ``area / (box width * box height)``.
        drop: Vertical position of the centroid inside the box, 0 = top, 1 = bottom.
    """

    colour: str
    shape: str
    bbox: tuple[float, float, float, float]
    area: float
    fill: float
    drop: float

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.bbox
        return ((x0 + x1) / 2, (y0 + y1) / 2)


@dataclasses.dataclass(frozen=True)
class ShapesScore:
    """The verdict for one (image, caption) pair.

    Attributes:
        count_ok: The number of detected objects equals the number the caption names.
        binding_ok: Every colour-shape pair of the caption is detected (as a multiset).
        position_ok: The relation holds between a detection matching the subject and a
            different detection matching the object (True for one-object captions); for
            three objects, both relations hold in one assignment of distinct detections.
            Matching prefers the exact colour-shape pair, then the colour, then the shape.
        overall: All three.
        spec: The parsed caption.
        detected: The detected objects, for debugging.
        relations_ok: Per relation of the caption, in caption order, whether it holds on
            its own (``()`` for one object; ``(position_ok,)`` for two).
    """

    count_ok: bool
    binding_ok: bool
    position_ok: bool
    overall: bool
    spec: CaptionSpec
    detected: tuple[DetectedObject, ...]
    relations_ok: tuple[bool, ...] = ()


def _to_float_rgb(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """Any supported image as float32 ``(H, W, 3)`` on the 0..255 scale (not rounded)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise GenimageError(
                f"expected a float image tensor (3, H, W) in [-1, 1], got {image.dtype} {tuple(image.shape)}"
            )
        array = (image.detach().float().cpu().permute(1, 2, 0).numpy() + 1.0) * 127.5
        return np.clip(array, 0.0, 255.0).astype(np.float32)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise GenimageError(f"expected a uint8 array (H, W, 3), got {image.dtype} {image.shape}")
        return image.astype(np.float32)
    raise GenimageError(f"expected a PIL image, uint8 array or float tensor, got {type(image).__name__}")


def _pixel_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: index of the nearest background-to-colour segment and the coverage on it."""
    p = rgb - _BG  # (H, W, 3)
    dots = p @ _DIRS.T  # (H, W, K)
    a = np.clip(dots / _DIR_NORM2, 0.0, 1.0)
    # |p - a d|^2 = |p|^2 - 2 a (p . d) + a^2 |d|^2; |p|^2 is the same for every colour.
    best = (a * (a * _DIR_NORM2 - 2.0 * dots)).argmin(-1)
    return best, np.take_along_axis(a, best[..., None], -1)[..., 0]


def _edges(profile: np.ndarray) -> tuple[float, float]:
    """Sub-pixel ``(start, end)`` of a coverage profile whose entries are in [0, 1]."""
    nz = np.flatnonzero(profile > 0)
    first, last = int(nz[0]), int(nz[-1])
    return first + 1.0 - float(profile[first]), last + float(profile[last])


def _refine_triangle(
    row_area: np.ndarray, row_offset: int, box: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """Apex height and base width of a triangle from its row areas.

    A pixel row fully inside the triangle's vertical extent covers ``w (y - y0) / h`` pixels
    at row centre ``y``: a line through zero at the apex ``y0`` with slope ``w / h``. Fitting
    it to the inner rows beats the profile edges, which miss the thin apex and base corners.
    Returns the profile box unchanged when too few rows are available or the fit is implausible.
    """
    x0, y0, x1, y1 = box
    rows = np.flatnonzero(row_area > 0)
    inner = np.arange(rows[0] + 1, rows[-1])
    if inner.size < 2:
        return box
    slope, intercept = np.polyfit(inner + row_offset + 0.5, row_area[inner], 1)
    if slope <= 0:
        return box
    apex = float(np.clip(-intercept / slope, y0 - 1.5, y0 + 0.5))
    half, xc = 0.5 * float(slope) * (y1 - apex), (x0 + x1) / 2
    return xc - half, apex, xc + half, y1


def _classify(fill: float, drop: float) -> str:
    if drop > 0.58 or fill < 0.64:
        return "triangle"
    return "square" if fill > 0.89 else "circle"


def detect_objects(
    image: Image.Image | np.ndarray | torch.Tensor, *, min_area: float = 0.01
) -> list[DetectedObject]:
    """Find the palette-coloured objects in an image.

    Args:
        image: A PIL image, a uint8 array ``(H, W, 3)`` or a float tensor ``(3, H, W)`` in [-1, 1].
        min_area: Components whose coverage is below this fraction of the image area are ignored.

    Returns:
        Detected objects, sorted by top-left corner (y, then x).
    """
    return _detect(_to_float_rgb(image), min_area)


def _detect(rgb: np.ndarray, min_area: float) -> list[DetectedObject]:
    height, width = rgb.shape[:2]
    best, alpha = _pixel_colours(rgb)
    # Noise floor: coverage below NOISE_FLOOR -> 0 and above 1 - NOISE_FLOOR -> 1, linear in
    # between, so 0.5 stays 0.5 and faint noise next to an object does not extend its box.
    soft = np.clip((alpha - NOISE_FLOOR) / (1.0 - 2.0 * NOISE_FLOOR), 0.0, 1.0)
    found = []
    for k, colour in enumerate(_COLOURS):
        is_colour = best == k
        mask = is_colour & (alpha >= 0.5)
        if not mask.any():
            continue
        labels, _ = ndimage.label(mask, structure=_EIGHT)
        coverage = np.where(is_colour, soft, 0.0)
        for label, sl in enumerate(ndimage.find_objects(labels), start=1):
            ys = slice(max(sl[0].start - 1, 0), min(sl[0].stop + 1, height))
            xs = slice(max(sl[1].start - 1, 0), min(sl[1].stop + 1, width))
            core = labels[ys, xs] == label
            cov = coverage[ys, xs] * ndimage.binary_dilation(core, structure=_EIGHT)
            area = float(cov.sum())
            if area < min_area * height * width:
                continue
            x0, x1 = _edges(cov.max(0))
            y0, y1 = _edges(cov.max(1))
            x0, x1, y0, y1 = x0 + xs.start, x1 + xs.start, y0 + ys.start, y1 + ys.start
            cy = float((cov.sum(1) * (np.arange(cov.shape[0]) + ys.start + 0.5)).sum()) / area
            fill = area / max((x1 - x0) * (y1 - y0), 1e-6)
            drop = (cy - y0) / max(y1 - y0, 1e-6)
            shape = _classify(fill, drop)
            if shape == "triangle":
                x0, y0, x1, y1 = _refine_triangle(cov.sum(1), ys.start, (x0, y0, x1, y1))
            found.append(DetectedObject(colour, shape, (x0, y0, x1, y1), area, fill, drop))
    found.sort(key=lambda o: (o.bbox[1], o.bbox[0]))
    return found


def _candidates(want: ObjectSpec, detected: Sequence[DetectedObject]) -> list[int]:
    for match in (
        lambda o: (o.colour, o.shape) == (want.colour, want.shape),
        lambda o: o.colour == want.colour,
        lambda o: o.shape == want.shape,
    ):
        idx = [i for i, o in enumerate(detected) if match(o)]
        if idx:
            return idx
    return []


def score(
    image: Image.Image | np.ndarray | torch.Tensor,
    caption: str | CaptionSpec,
    *,
    min_area: float = 0.01,
    min_offset: float = 0.0,
) -> ShapesScore:
    """Check an image against a shapes caption.

    Args:
        image: A PIL image, a uint8 array ``(H, W, 3)`` or a float tensor ``(3, H, W)`` in [-1, 1].
        caption: A caption in the shapes grammar (or an already parsed :class:`CaptionSpec`).
        min_area: Smallest object, as a fraction of the image area (smaller blobs are noise).
        min_offset: Minimum centre offset along the relation's axis, as a fraction of the
            image side; 0 (default) is the loose rule described in the module docstring.

    Returns:
        A :class:`ShapesScore`.

    Raises:
        GenimageError: If the caption is outside the grammar or the image has an unsupported type.
    """
    spec = caption if isinstance(caption, CaptionSpec) else parse_caption(caption)
    rgb = _to_float_rgb(image)
    detected = tuple(_detect(rgb, min_area))
    count_ok = len(detected) == len(spec.objects)
    have = Counter((o.colour, o.shape) for o in detected)
    want = Counter((o.colour, o.shape) for o in spec.objects)
    binding_ok = all(have[p] >= n for p, n in want.items())
    side = float(max(rgb.shape[:2]))
    cands = [_candidates(o, detected) for o in spec.objects]

    def holds(i: int, j: int, relation: str) -> bool:
        (sx, sy), (ox, oy) = detected[i].centre, detected[j].centre
        return i != j and bool(relation_holds(sx - ox, sy - oy, relation, min_offset * side))

    # pairs[k]: the (subject, object) detections satisfying relation k on their own.
    pairs = [
        {(i, j) for i, j in itertools.product(cands[k], cands[k + 1]) if holds(i, j, rel)}
        for k, rel in enumerate(spec.relations)
    ]
    relations_ok = tuple(bool(p) for p in pairs)
    if len(pairs) == 2:
        position_ok = any(b == b2 and a != c for a, b in pairs[0] for b2, c in pairs[1])
    else:
        position_ok = all(relations_ok)
    return ShapesScore(
        count_ok=count_ok,
        binding_ok=binding_ok,
        position_ok=bool(position_ok),
        overall=bool(count_ok and binding_ok and position_ok),
        spec=spec,
        detected=detected,
        relations_ok=relations_ok,
    )


def summarize(scores: Sequence[ShapesScore]) -> dict[str, float]:
    """Fraction of scores with each check true: keys ``count``, ``binding``, ``position``, ``overall``."""
    if not scores:
        raise GenimageError("summarize needs at least one score")
    n = len(scores)
    return {
        "count": sum(s.count_ok for s in scores) / n,
        "binding": sum(s.binding_ok for s in scores) / n,
        "position": sum(s.position_ok for s in scores) / n,
        "overall": sum(s.overall for s in scores) / n,
    }
