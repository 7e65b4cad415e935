"""``shapes``: procedurally generated, captioned scenes of coloured shapes.

A small compositional benchmark in the spirit of GenEval (Ghosh et al., 2023, "GenEval: An
Object-Focused Framework for Evaluating Text-to-Image Alignment": counting, colour binding
and position) and of CLEVR-style held-out attribute combinations (Johnson et al., 2017,
CoGenT splits), made cheap enough to train and score on a CPU. Its exact spec:

* Background RGB ``(245, 245, 240)``. Object colours before jitter are :data:`PALETTE`;
  each object gets one uniform integer offset in ``[-10, 10]`` per channel.
* Filled shapes (:data:`SHAPES`): ``circle``, ``square`` (axis-aligned) and ``triangle``
  (isosceles, apex up at the top centre of its box, horizontal base along the box
  bottom). Every bounding-box side is 25-40% of the image side: circles and squares have
  ``w == h``; a triangle draws ``w`` and ``h`` independently in that range.
* 1 or 2 objects (2 with probability ``two_object_prob``), fully inside the image, with
  disjoint bounding boxes separated by a gap of at least ``max(2 px, 5% of the side)``.
* Captions: ``"a red circle"`` or ``"a red circle to the left of a blue square"``; the
  relation (:data:`RELATIONS`) is uniform and the first object is its subject; the
  article is ``"an"`` before ``"orange"``. For a relation, the subject's and object's
  bounding-box centres differ along the named axis by at least 20% of the side and by
  more than along the other axis (:func:`relation_holds`; image y grows downward, so
  "above" means a smaller y). Placements are rejection-sampled until this holds.
* Three-object scenes (an addition; off unless ``three_object_share > 0``, so the
  default dataset's items are unchanged): with probability ``three_object_share`` a
  scene has three objects A, B, C, otherwise it is a one- or two-object scene as above.
  The caption is ``"<A> <rel1> <B> <rel2> <C>"``, e.g. ``"a red circle above a blue
  square to the left of a green triangle"``, meaning *A rel1 B* and *B rel2 C*: each
  relation holds, with the margins above, between the two objects next to it in the
  caption (nothing is asserted between A and C). ``rel1`` and ``rel2`` are uniform and
  independent. Bounding-box sides are 20-30% of the image side (circles and squares
  ``w == h``, triangles independent), all three boxes fully inside and pairwise
  separated by the same gap; placements are drawn jointly and rejection-sampled until
  all of this holds (so the layout is uniform over the valid ones).
  ``builtin:shapes3`` is ``builtin:shapes`` with ``three_object_share=1/3``.
* Splits (held-out compositions): the colour-shape pairs in ``held_out`` (default
  :data:`DEFAULT_HELD_OUT`) never appear in ``split="train"``. Compositions are drawn
  uniformly from the grammar (each object's pair uniform over the 18 pairs, the relation
  uniform) and conditioned on the split: ``"train"`` keeps scenes with no held-out pair,
  ``"eval"`` keeps scenes with at least one (the other objects of a two- or three-object
  eval scene may be any pair, held-out or not), ``"all"`` keeps everything.
* Caption-aware horizontal flip (an augmentation, off by default): with ``flip=True``
  each item of each epoch is mirrored left-right with probability 1/2 (drawn from
  ``(seed, index, epoch)``; :meth:`ShapesDataset.set_epoch`): every box ``(x0, y0, x1, y1)``
  becomes ``(S - x1, y0, S - x0, y1)`` and ``"to the left of"`` and ``"to the right of"``
  swap in the caption (:func:`mirror_spec`), so image and caption still agree; the image is
  the exact mirror of the unflipped render. The mirrored scene satisfies the same spec;
  the procedural layout distribution is already mirror symmetric, so the flip matters for
  a finite set of items (e.g. a small ``length``).
* Anti-aliasing by supersampling: the scene is drawn at ``supersample`` times the size
  with PIL and box-filtered down, so every bounding-box coordinate is a multiple of
  ``1 / supersample`` pixel.

Item ``i`` depends only on ``(seed, i)`` (and the split): its composition is drawn from
``item_rng(seed, i, s)`` and its layout and colour jitter from ``item_rng(seed, i, s + 1)``
(:func:`genimage.data.types.item_rng`), with ``s`` = 0, 2, 4 for train, eval, all (so the
splits' layouts are independent), so any item can be produced alone, and
:func:`sample_captions` returns exactly the captions of items ``0..n-1``. The composition
draws the number of objects first: one ``random()`` against ``three_object_share`` (only
when it is positive), then, for a scene that is not a three-object one, one against
``two_object_prob`` as always.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw

from genimage.data.types import (
    DatasetItem,
    ImageDataset,
    check_index,
    check_split,
    image_from_uint8,
    item_rng,
    uniform_int,
)
from genimage.errors import GenimageError

BACKGROUND: tuple[int, int, int] = (245, 245, 240)
"""Background RGB."""

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 150, 30),
    "yellow": (240, 220, 40),
    "green": (50, 180, 70),
    "blue": (50, 90, 230),
    "purple": (150, 60, 200),
}
"""Colour name -> RGB before jitter."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")
DEFAULT_HELD_OUT: tuple[tuple[str, str], ...] = (
    ("purple", "triangle"),
    ("orange", "circle"),
    ("green", "square"),
)
"""Colour-shape pairs absent from ``split="train"`` by default."""

COLOUR_JITTER = 10
"""Maximum absolute per-channel offset added to an object's palette colour."""
MIN_SIDE, MAX_SIDE = 0.25, 0.40
"""Range of a bounding-box side, as a fraction of the image side (one- and two-object scenes)."""
THREE_MIN_SIDE, THREE_MAX_SIDE = 0.20, 0.30
"""Range of a bounding-box side in three-object scenes, as a fraction of the image side."""
DEFAULT_THREE_OBJECT_SHARE = 1 / 3
"""Share of three-object scenes in ``builtin:shapes3`` (``builtin:shapes`` has none)."""
MIN_RELATION_OFFSET = 0.20
"""Minimum centre offset along a relation's axis, as a fraction of the image side."""
MIN_IMAGE_SIZE = 16

_SPLIT_STREAMS = {"train": 0, "eval": 2, "all": 4}

ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in PALETTE for s in SHAPES)
"""All 18 colour-shape pairs, colour-major."""


def article(colour: str) -> str:
    """``"an"`` before a colour starting with a vowel (``"orange"``), else ``"a"``."""
    return "an" if colour[0] in "aeiou" else "a"


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """One caption object: a colour name from :data:`PALETTE` and a shape from :data:`SHAPES`."""

    colour: str
    shape: str

    @property
    def phrase(self) -> str:
        """E.g. ``"an orange square"``."""
        return f"{article(self.colour)} {self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class CaptionSpec:
    """What a caption says: 1, 2 or 3 objects and the relations between neighbours.

    Attributes:
        objects: The caption's objects in order.
        relation: For 2 or 3 objects, the relation of ``objects[0]`` to ``objects[1]``; else ``None``.
        relation2: For 3 objects, the relation of ``objects[1]`` to ``objects[2]``; else ``None``.
    """

    objects: tuple[ObjectSpec, ...]
    relation: str | None = None
    relation2: str | None = None

    @property
    def relations(self) -> tuple[str, ...]:
        """The relations in caption order (``relations[k]`` links ``objects[k]`` and ``objects[k + 1]``)."""
        return tuple(r for r in (self.relation, self.relation2) if r is not None)

    @property
    def caption(self) -> str:
        """The caption text, e.g. ``"a red circle to the left of a blue square"``."""
        text = self.objects[0].phrase
        for relation, obj in zip(self.relations, self.objects[1:]):
            text += f" {relation} {obj.phrase}"
        return text


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One drawn object.

    Attributes:
        colour: Palette colour name.
        shape: Shape name.
        bbox: ``(x0, y0, x1, y1)`` in output-image pixels (x right, y down, ``x1``/``y1``
            exclusive), multiples of ``1 / supersample``.
        rgb: The jittered fill colour.
    """

    colour: str
    shape: str
    bbox: tuple[float, float, float, float]
    rgb: tuple[int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        """Bounding-box centre ``(x, y)`` in pixels."""
        x0, y0, x1, y1 = self.bbox
        return ((x0 + x1) / 2, (y0 + y1) / 2)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A full scene description: objects in caption order, relation(s) or ``None``, image side in px.

    ``relation`` links ``objects[0]`` and ``objects[1]``; ``relation2`` (three-object scenes
    only) links ``objects[1]`` and ``objects[2]``.
    """

    objects: tuple[SceneObject, ...]
    relation: str | None
    image_size: int
    relation2: str | None = None

    @property
    def spec(self) -> CaptionSpec:
        return CaptionSpec(tuple(ObjectSpec(o.colour, o.shape) for o in self.objects), self.relation, self.relation2)

    @property
    def caption(self) -> str:
        return self.spec.caption


def relation_holds(dx, dy, relation: str, min_offset: float):
    """Whether a centre offset satisfies a relation (works on floats and numpy arrays).

    Args:
        dx: Subject centre x minus object centre x.
        dy: Subject centre y minus object centre y (y grows downward).
        relation: One of :data:`RELATIONS`.
        min_offset: Minimum ``|offset|`` along the relation's axis, in the same unit.

    Returns:
        True where the offset along the named axis has the right sign, is at least
        ``min_offset`` and is larger in magnitude than the offset along the other axis.
    """
    if relation == "to the left of":
        return (dx <= -min_offset) & (abs(dx) > abs(dy))
    if relation == "to the right of":
        return (dx >= min_offset) & (abs(dx) > abs(dy))
    if relation == "above":
        return (dy <= -min_offset) & (abs(dy) > abs(dx))
    if relation == "below":
        return (dy >= min_offset) & (abs(dy) > abs(dx))
    raise GenimageError(f"unknown relation {relation!r}; choose one of: {', '.join(RELATIONS)}")


_OBJ_RE = rf"(a|an) ({'|'.join(PALETTE)}) ({'|'.join(SHAPES)})"
_REL_RE = "|".join(RELATIONS)
_CAPTION_RE = re.compile(rf"{_OBJ_RE}(?: ({_REL_RE}) {_OBJ_RE}(?: ({_REL_RE}) {_OBJ_RE})?)?")


def parse_caption(caption: str) -> CaptionSpec:
    """Parse a shapes caption (case and repeated spaces are ignored).

    Args:
        caption: E.g. ``"an orange square above a blue triangle"`` or, with three objects,
            ``"a red circle above a blue square to the left of a green triangle"``.

    Returns:
        The :class:`CaptionSpec`; ``parse_caption(spec.caption) == spec``.

    Raises:
        GenimageError: If the text is outside the grammar (unknown word, wrong article,
            trailing text).
    """
    text = " ".join(str(caption).lower().split())
    match = _CAPTION_RE.fullmatch(text)
    if match is None:
        raise GenimageError(
            f"caption {caption!r} is outside the shapes grammar; expected e.g. 'a red circle', "
            f"'an orange square above a blue triangle' or 'a red circle above a blue square to the "
            f"left of a green triangle' (colours: {', '.join(PALETTE)}; "
            f"shapes: {', '.join(SHAPES)}; relations: {', '.join(RELATIONS)})"
        )
    groups = match.groups()
    objects = [groups[0:3]]
    if groups[3]:
        objects.append(groups[4:7])
    if groups[7]:
        objects.append(groups[8:11])
    for art, col, _ in objects:
        if art != article(col):
            raise GenimageError(f"caption {caption!r}: write {article(col)!r} before {col!r}")
    return CaptionSpec(tuple(ObjectSpec(c, s) for _, c, s in objects), groups[3], groups[7])


def _check_held_out(held_out: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    pairs = frozenset((str(c), str(s)) for c, s in held_out)
    bad = sorted(p for p in pairs if p not in ALL_PAIRS)
    if bad:
        raise GenimageError(
            f"held_out pairs {bad} are not (colour, shape) pairs; colours: {', '.join(PALETTE)}; "
            f"shapes: {', '.join(SHAPES)}"
        )
    return pairs


def _check_prob(two_object_prob: float, name: str = "two_object_prob") -> float:
    if not 0.0 <= two_object_prob <= 1.0:
        raise GenimageError(f"{name} must be in [0, 1], got {two_object_prob}")
    return float(two_object_prob)


def _check_split_pairs(split: str, held_out: frozenset[tuple[str, str]]) -> None:
    check_split(split)
    if split == "eval" and not held_out:
        raise GenimageError("split='eval' needs at least one held_out pair; pass held_out or use split='all'")
    if split == "train" and len(held_out) == len(ALL_PAIRS):
        raise GenimageError("held_out holds every colour-shape pair, so split='train' would be empty")


def _sample_spec(
    rng: random.Random,
    split: str,
    held_out: frozenset[tuple[str, str]],
    two_object_prob: float,
    three_object_share: float = 0.0,
) -> CaptionSpec:
    """Draw a composition: grammar-uniform, conditioned on the split (rejection sampling).

    With ``three_object_share == 0`` the draws are exactly those of the original 1-2 object
    dataset (no extra ``random()`` call), so its items are unchanged.
    """
    if three_object_share > 0.0 and rng.random() < three_object_share:
        n_objects = 3
    else:
        n_objects = 2 if rng.random() < two_object_prob else 1
    while True:
        pairs = [ALL_PAIRS[uniform_int(rng, 0, len(ALL_PAIRS) - 1)] for _ in range(n_objects)]
        n_held = sum(p in held_out for p in pairs)
        if split == "all" or (split == "train" and n_held == 0) or (split == "eval" and n_held > 0):
            break
    relation = RELATIONS[uniform_int(rng, 0, len(RELATIONS) - 1)] if n_objects >= 2 else None
    relation2 = RELATIONS[uniform_int(rng, 0, len(RELATIONS) - 1)] if n_objects == 3 else None
    return CaptionSpec(tuple(ObjectSpec(c, s) for c, s in pairs), relation, relation2)


def _sample_layout(
    rng: random.Random, spec: CaptionSpec, image_size: int, supersample: int
) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int]]]:
    """Draw boxes on the supersampled grid and jittered colours.

    Returns:
        ``boxes``: ``(x0, y0, x1, y1)`` per object on the ``image_size * supersample`` grid
        (exclusive ends), and ``rgb``: the jittered colour per object.
    """
    grid = image_size * supersample
    gap = math.ceil(max(2.0, 0.05 * image_size) * supersample)
    min_offset2 = 2 * MIN_RELATION_OFFSET * grid  # centre offsets are compared doubled (integers)
    if len(spec.objects) == 3:
        return _sample_layout3(rng, spec, grid, gap, min_offset2)
    lo, hi = math.ceil(MIN_SIDE * grid), math.floor(MAX_SIDE * grid)
    for _ in range(100_000):
        boxes = []
        for obj in spec.objects:
            w = uniform_int(rng, lo, hi)
            h = w if obj.shape != "triangle" else uniform_int(rng, lo, hi)
            x0, y0 = uniform_int(rng, 0, grid - w), uniform_int(rng, 0, grid - h)
            boxes.append((x0, y0, x0 + w, y0 + h))
        if spec.relation is None:
            break
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes
        apart = ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0
        dx2, dy2 = (ax0 + ax1) - (bx0 + bx1), (ay0 + ay1) - (by0 + by1)
        if apart and relation_holds(dx2, dy2, spec.relation, min_offset2):
            break
    else:  # pragma: no cover - acceptance is a few percent or more
        raise RuntimeError("shapes: placement rejection sampling did not converge")
    return boxes, _jitter_colours(rng, spec)


def _jitter_colours(rng: random.Random, spec: CaptionSpec) -> list[tuple[int, int, int]]:
    jitter = COLOUR_JITTER
    return [
        tuple(min(255, max(0, v + uniform_int(rng, -jitter, jitter))) for v in PALETTE[o.colour])  # type: ignore[misc]
        for o in spec.objects
    ]


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Whether two boxes are separated by at least ``gap`` along some axis."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _holds(a: tuple[int, int, int, int], b: tuple[int, int, int, int], relation: str, min_offset2: float) -> bool:
    """The relation of box ``a`` to box ``b``, on doubled centre offsets."""
    return bool(relation_holds((a[0] + a[2]) - (b[0] + b[2]), (a[1] + a[3]) - (b[1] + b[3]), relation, min_offset2))


def _sample_layout3(
    rng: random.Random, spec: CaptionSpec, grid: int, gap: int, min_offset2: float
) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int]]]:
    """Three boxes with sides 20-30% of the side: A rel1 B, B rel2 C, pairwise apart.

    Joint rejection sampling; a candidate is abandoned as soon as a drawn pair fails (the
    remaining draws are independent of it), which leaves the accepted distribution the
    uniform one over valid layouts.
    """
    lo, hi = math.ceil(THREE_MIN_SIDE * grid), math.floor(THREE_MAX_SIDE * grid)

    def box(obj: ObjectSpec) -> tuple[int, int, int, int]:
        w = uniform_int(rng, lo, hi)
        h = w if obj.shape != "triangle" else uniform_int(rng, lo, hi)
        x0, y0 = uniform_int(rng, 0, grid - w), uniform_int(rng, 0, grid - h)
        return (x0, y0, x0 + w, y0 + h)

    a_spec, b_spec, c_spec = spec.objects
    for _ in range(1_000_000):
        a, b = box(a_spec), box(b_spec)
        if not (_apart(a, b, gap) and _holds(a, b, spec.relation, min_offset2)):  # type: ignore[arg-type]
            continue
        c = box(c_spec)
        if _apart(c, a, gap) and _apart(c, b, gap) and _holds(b, c, spec.relation2, min_offset2):  # type: ignore[arg-type]
            return [a, b, c], _jitter_colours(rng, spec)
    raise RuntimeError("shapes: three-object placement rejection sampling did not converge")  # pragma: no cover


_MIRRORED = {"to the left of": "to the right of", "to the right of": "to the left of"}


def mirror_spec(spec: CaptionSpec) -> CaptionSpec:
    """The caption of the left-right mirrored scene: left and right swap, above/below stay.

    Args:
        spec: A parsed caption.

    Returns:
        The same objects with ``"to the left of"`` and ``"to the right of"`` exchanged.
    """
    swap = lambda r: None if r is None else _MIRRORED.get(r, r)  # noqa: E731
    return CaptionSpec(spec.objects, swap(spec.relation), swap(spec.relation2))


def mirror_scene(scene: Scene) -> Scene:
    """The scene mirrored left-right: boxes ``x -> image_size - x`` and the caption by :func:`mirror_spec`."""
    size = scene.image_size
    objects = tuple(
        dataclasses.replace(o, bbox=(size - o.bbox[2], o.bbox[1], size - o.bbox[0], o.bbox[3])) for o in scene.objects
    )
    spec = mirror_spec(scene.spec)
    return Scene(objects, spec.relation, size, spec.relation2)


def render_scene(scene: Scene, supersample: int = 4) -> np.ndarray:
    """Draw a scene as a uint8 array ``(H, W, 3)``.

    Shapes are drawn with PIL on a grid ``supersample`` times larger and reduced with a box
    filter, so edge pixels hold the fraction of the pixel the shape covers.

    Args:
        scene: The scene; its boxes must lie on the ``1 / supersample`` pixel grid.
        supersample: Supersampling factor per axis (4 gives 17 coverage levels).
    """
    grid = scene.image_size * supersample
    canvas = Image.new("RGB", (grid, grid), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        x0, y0, x1, y1 = (int(round(v * supersample)) for v in obj.bbox)
        # PIL boxes are inclusive: the last covered pixel is x1 - 1.
        if obj.shape == "square":
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=obj.rgb)
        elif obj.shape == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=obj.rgb)
        else:
            draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=obj.rgb)
    if supersample > 1:
        canvas = canvas.reduce(supersample)
    return np.array(canvas)


def sample_captions(
    n: int,
    seed: int = 0,
    split: str = "train",
    *,
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
    two_object_prob: float = 0.5,
    three_object_share: float = 0.0,
) -> list[str]:
    """Evaluation prompts from the split's caption distribution.

    Args:
        n: Number of captions.
        seed: Seed; the result equals the captions of items ``0..n-1`` of
            ``ShapesDataset(seed=seed, split=split, held_out=held_out, two_object_prob=...,
            three_object_share=...)``.
        split: ``"train"``, ``"eval"`` or ``"all"`` (see the module docstring).
        held_out: Colour-shape pairs held out of the train split.
        two_object_prob: Probability that a caption that is not a three-object one has two
            objects and a relation.
        three_object_share: Probability that a caption has three objects and two relations
            (0, the default, gives exactly the original 1-2 object captions; 1 gives only
            three-object captions).

    Returns:
        ``n`` captions.
    """
    pairs = _check_held_out(held_out)
    _check_split_pairs(split, pairs)
    prob = _check_prob(two_object_prob)
    share = _check_prob(three_object_share, "three_object_share")
    if n < 0 or not 0 <= seed < 2**61:
        raise GenimageError(f"need n >= 0 and 0 <= seed < 2**61, got n={n}, seed={seed}")
    stream = _SPLIT_STREAMS[split]
    return [_sample_spec(item_rng(seed, i, stream), split, pairs, prob, share).caption for i in range(n)]


class ShapesDataset(ImageDataset):
    """Captioned scenes of 1-3 coloured shapes; see the module docstring for the exact spec.

    Items are ``{"image": FloatTensor (3, image_size, image_size) in [-1, 1], "caption": str}``.

    Args:
        length: Number of items (any positive number; items are generated on the fly).
        image_size: Image side in pixels (at least 16).
        split: ``"train"`` (no held-out pair), ``"eval"`` (at least one held-out pair in
            every image) or ``"all"``.
        seed: Non-negative seed; item ``i`` depends only on ``(seed, i)``.
        held_out: Colour-shape pairs kept out of the train split.
        two_object_prob: Probability that an image that is not a three-object one has two
            objects (and a relation).
        three_object_share: Probability that an image has three objects and two relations
            (default 0: the original 1-2 object dataset, item for item; ``builtin:shapes3``
            uses :data:`DEFAULT_THREE_OBJECT_SHARE`).
        supersample: Anti-aliasing supersampling factor per axis.
        flip: Caption-aware horizontal flip: mirror each item of each epoch with probability
            1/2 (see the module docstring and :meth:`set_epoch`). Default off.
    """

    has_captions = True
    channels = 3

    def __init__(
        self,
        length: int = 100_000,
        image_size: int = 32,
        split: str = "train",
        seed: int = 0,
        *,
        held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
        two_object_prob: float = 0.5,
        three_object_share: float = 0.0,
        supersample: int = 4,
        flip: bool = False,
    ) -> None:
        if not 1 <= length <= 2**64:
            raise GenimageError(f"shapes length must be in [1, 2**64], got {length}")
        if image_size < MIN_IMAGE_SIZE:
            raise GenimageError(f"shapes image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        if not 0 <= seed < 2**61:
            raise GenimageError(f"shapes seed must be in [0, 2**61), got {seed}")
        if supersample < 1:
            raise GenimageError(f"shapes supersample must be >= 1, got {supersample}")
        self.held_out = _check_held_out(held_out)
        _check_split_pairs(split, self.held_out)
        self.two_object_prob = _check_prob(two_object_prob)
        self.three_object_share = _check_prob(three_object_share, "three_object_share")
        self.length = int(length)
        self.image_size = int(image_size)
        self.split = split
        self.seed = int(seed)
        self.supersample = int(supersample)
        self.flip = bool(flip)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random flips (``flip=True``) the items use; no effect otherwise."""
        self.epoch = int(epoch)

    def flipped(self, index: int) -> bool:
        """Whether item ``index`` of the current epoch is mirrored (always ``False`` without ``flip``)."""
        if not self.flip:
            return False
        index = check_index(index, self.length)
        return random.Random(f"shapes-flip|{self.seed}|{self.split}|{index}|{self.epoch}").random() < 0.5

    def scene(self, index: int) -> Scene:
        """The structural description of item ``index`` (objects, boxes, colours, relation)."""
        scene = self._drawn_scene(index)
        return mirror_scene(scene) if self.flipped(index) else scene

    def _drawn_scene(self, index: int) -> Scene:
        """Item ``index`` before any flip."""
        index = check_index(index, self.length)
        stream = _SPLIT_STREAMS[self.split]
        spec_rng, layout_rng = item_rng(self.seed, index, stream), item_rng(self.seed, index, stream + 1)
        spec = _sample_spec(spec_rng, self.split, self.held_out, self.two_object_prob, self.three_object_share)
        boxes, rgb = _sample_layout(layout_rng, spec, self.image_size, self.supersample)
        s = self.supersample
        objects = tuple(
            SceneObject(o.colour, o.shape, tuple(v / s for v in box), c)  # type: ignore[arg-type]
            for o, box, c in zip(spec.objects, boxes, rgb)
        )
        return Scene(objects, spec.relation, self.image_size, spec.relation2)

    def _item(self, index: int) -> tuple[Scene, np.ndarray]:
        scene = self._drawn_scene(index)
        image = render_scene(scene, self.supersample)
        if self.flipped(index):  # the exact mirror image (PIL's triangles are not mirror-symmetric)
            return mirror_scene(scene), np.ascontiguousarray(image[:, ::-1])
        return scene, image

    def render(self, index: int) -> np.ndarray:
        """Item ``index`` as a uint8 array ``(H, W, 3)``."""
        return self._item(index)[1]

    def __getitem__(self, index: int) -> DatasetItem:
        scene, image = self._item(index)
        return {"image": image_from_uint8(image), "caption": scene.caption}
