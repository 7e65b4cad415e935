"""Tests for three-object ``shapes`` scenes (issue 22): spec, captions, splits, analyzer."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from genimage.data.builtin import load_builtin
from genimage.data.shapes import (
    BACKGROUND,
    DEFAULT_HELD_OUT,
    MIN_RELATION_OFFSET,
    PALETTE,
    RELATIONS,
    CaptionSpec,
    ObjectSpec,
    Scene,
    SceneObject,
    ShapesDataset,
    parse_caption,
    relation_holds,
    render_scene,
    sample_captions,
)
from genimage.data.shapes_analyzer import score, summarize
from genimage.errors import GenimageError

OPPOSITE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}


def _three(size: int, n: int, split: str = "all", seed: int = 0):
    ds = ShapesDataset(length=10**6, image_size=size, split=split, seed=seed, three_object_share=1.0)
    return ds, [ds.scene(i) for i in range(n)]


def _apart(a, b, gap):
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


@pytest.mark.parametrize("size", [32, 64])
def test_three_object_spec_sizes_inside_apart_relations(size):
    ds, scenes = _three(size, 300, seed=1)
    gap = max(2.0, 0.05 * size)
    for i, scene in enumerate(scenes):
        assert len(scene.objects) == 3 and scene.relation in RELATIONS and scene.relation2 in RELATIONS
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.bbox
            w, h = x1 - x0, y1 - y0
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert 0.20 * size - 1e-9 <= w <= 0.30 * size + 1e-9
            assert 0.20 * size - 1e-9 <= h <= 0.30 * size + 1e-9
            assert obj.shape == "triangle" or w == h
        a, b, c = (o.bbox for o in scene.objects)
        assert _apart(a, b, gap) and _apart(b, c, gap) and _apart(a, c, gap)
        (ax, ay), (bx, by), (cx, cy) = (o.centre for o in scene.objects)
        assert relation_holds(ax - bx, ay - by, scene.relation, MIN_RELATION_OFFSET * size)
        assert relation_holds(bx - cx, by - cy, scene.relation2, MIN_RELATION_OFFSET * size)
        if i < 40:  # nothing drawn outside the boxes
            img = ds.render(i)
            drawn = np.any(img != np.array(BACKGROUND, dtype=np.uint8), axis=-1)
            inside = np.zeros_like(drawn)
            for x0, y0, x1, y1 in (a, b, c):
                inside[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
            assert drawn.any() and not (drawn & ~inside).any()


def test_relations_uniform_and_independent():
    _, scenes = _three(32, 1600, seed=2)
    first = collections.Counter(s.relation for s in scenes)
    second = collections.Counter(s.relation2 for s in scenes)
    both = collections.Counter((s.relation, s.relation2) for s in scenes)
    assert set(first) == set(second) == set(RELATIONS)
    assert min(first.values()) > 0.2 * 1600 and min(second.values()) > 0.2 * 1600
    assert len(both) == 16 and min(both.values()) > 0.03 * 1600  # expected 1/16 each


def test_share_mixes_scene_kinds_and_keeps_their_specs():
    ds = load_builtin("shapes3", length=3000, seed=4)
    scenes = [ds.scene(i) for i in range(3000)]
    counts = collections.Counter(len(s.objects) for s in scenes)
    assert abs(counts[3] / 3000 - 1 / 3) < 0.04
    assert abs(counts[2] / 3000 - 1 / 3) < 0.04 and abs(counts[1] / 3000 - 1 / 3) < 0.04
    for s in scenes[:300]:
        lo, hi = (0.20, 0.30) if len(s.objects) == 3 else (0.25, 0.40)
        for o in s.objects:
            assert lo * 32 - 1e-9 <= o.bbox[2] - o.bbox[0] <= hi * 32 + 1e-9
        assert (s.relation2 is not None) == (len(s.objects) == 3)
        assert (s.relation is not None) == (len(s.objects) >= 2)
    assert ds.three_object_share == pytest.approx(1 / 3)
    assert load_builtin("shapes", length=10).three_object_share == 0.0
    custom = load_builtin("shapes", length=200, three_object_share=1.0)
    assert all(len(custom.scene(i).objects) == 3 for i in range(200))
    for bad in (-0.1, 1.5):
        with pytest.raises(GenimageError, match="three_object_share"):
            ShapesDataset(three_object_share=bad)
        with pytest.raises(GenimageError, match="three_object_share"):
            sample_captions(3, three_object_share=bad)


def test_held_out_pairs_stay_held_out_with_three_objects():
    _, train = _three(32, 1500, split="train", seed=5)
    pairs = {(o.colour, o.shape) for s in train for o in s.objects}
    assert not pairs & set(DEFAULT_HELD_OUT) and len(pairs) == 15
    _, evals = _three(32, 500, split="eval", seed=5)
    assert all(any((o.colour, o.shape) in DEFAULT_HELD_OUT for o in s.objects) for s in evals)
    # Other objects of an eval scene may be any pair: some scenes hold one held-out pair only.
    held_counts = collections.Counter(sum((o.colour, o.shape) in DEFAULT_HELD_OUT for o in s.objects) for s in evals)
    assert held_counts[1] > held_counts[2] > held_counts[3] > 0


def test_three_object_captions_round_trip_and_sample_captions_match():
    _, scenes = _three(32, 500, seed=6)
    for s in scenes:
        spec = parse_caption(s.caption)
        assert spec == s.spec and spec.caption == s.caption and len(spec.relations) == 2
    spec = parse_caption("a red circle above a blue square to the left of an orange triangle")
    assert spec == CaptionSpec(
        (ObjectSpec("red", "circle"), ObjectSpec("blue", "square"), ObjectSpec("orange", "triangle")),
        "above",
        "to the left of",
    )
    assert spec.relations == ("above", "to the left of")
    with pytest.raises(GenimageError, match="'an' before 'orange'"):
        parse_caption("a red circle above a blue square to the left of a orange triangle")
    for split in ("train", "eval"):
        for share in (1 / 3, 1.0):
            ds = ShapesDataset(length=200, seed=3, split=split, three_object_share=share)
            assert sample_captions(200, seed=3, split=split, three_object_share=share) == [
                ds.scene(i).caption for i in range(200)
            ]


@pytest.mark.parametrize("size", [32, 64])
def test_analyzer_scores_three_object_dataset_images(size):
    scores = []
    for split in ("train", "eval"):
        ds = ShapesDataset(length=10**6, image_size=size, split=split, seed=21, three_object_share=1.0)
        scores += [score(ds.render(i), ds.scene(i).caption) for i in range(150)]
    result = summarize(scores)
    assert result["overall"] >= 0.99, result
    assert result["count"] == 1.0 and result["binding"] == 1.0
    assert sum(all(s.relations_ok) and len(s.relations_ok) == 2 for s in scores) >= 0.99 * len(scores)


def _wrong(spec: CaptionSpec, kind: str, rng: np.random.Generator) -> CaptionSpec | None:
    objs = list(spec.objects)
    if kind in ("relation1", "relation2"):
        k = 0 if kind == "relation1" else 1
        if objs[k] == objs[k + 1]:  # "a red circle above a red circle" reads both ways
            return None
        rels = list(spec.relations)
        rels[k] = OPPOSITE[rels[k]]
        return CaptionSpec(spec.objects, *rels)
    if kind == "colour":
        k = int(rng.integers(3))
        objs[k] = ObjectSpec(str(rng.choice([c for c in PALETTE if c != objs[k].colour])), objs[k].shape)
        return CaptionSpec(tuple(objs), spec.relation, spec.relation2)
    return CaptionSpec(tuple(objs[:2]), spec.relation)  # count: name only two of the three


@pytest.mark.parametrize("kind", ["relation1", "relation2", "colour", "count"])
def test_analyzer_rejects_wrong_three_object_captions(kind):
    ds, scenes = _three(32, 150, seed=22)
    rng = np.random.default_rng(0)
    verdicts = []
    for i, scene in enumerate(scenes):
        wrong = _wrong(scene.spec, kind, rng)
        if wrong is not None:
            result = score(ds.render(i), wrong)
            verdicts.append(result.overall)
            if kind == "relation1":
                assert result.relations_ok[1]  # the untouched relation still holds
            if kind == "relation2":
                assert result.relations_ok[0]
    assert len(verdicts) >= 100
    assert sum(verdicts) / len(verdicts) <= 0.02


def _obj(colour, shape, cx, cy, side=6.0):
    """An object of side ``side`` centred at ``(cx, cy)``."""
    return SceneObject(colour, shape, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), PALETTE[colour])


def test_position_needs_one_consistent_assignment():
    # Two blue squares: the first is right of the red circle, the second left of the green
    # triangle; each relation holds on its own, but no single blue square satisfies both.
    scene = Scene(
        (_obj("red", "circle", 4, 16), _obj("blue", "square", 14, 13), _obj("blue", "square", 4, 28),
         _obj("green", "triangle", 28, 28)),
        None, 32,
    )
    caption = "a red circle to the left of a blue square to the left of a green triangle"
    result = score(render_scene(scene), caption)
    assert len(result.detected) == 4
    assert result.relations_ok == (True, True)
    assert not result.position_ok and not result.overall and not result.count_ok
    # A consistent chain passes: red left of blue, blue left of green.
    chain = Scene((_obj("red", "circle", 5, 16), _obj("blue", "square", 16, 16), _obj("green", "triangle", 27, 16)),
                  "to the left of", 32, "to the left of")
    assert chain.caption == caption
    result = score(render_scene(chain), caption)
    assert result.overall and result.relations_ok == (True, True)
    wrong = dataclasses.replace(chain.spec, relation2="above")
    result = score(render_scene(chain), wrong)
    assert result.relations_ok == (True, False) and not result.position_ok
    # Nothing is asserted between A and C: here both A and C are left of B.
    bent = Scene((_obj("red", "circle", 5, 8), _obj("blue", "square", 20, 12), _obj("green", "triangle", 5, 24)),
                 "to the left of", 32, "to the right of")
    assert score(render_scene(bent), bent.caption).overall


def test_one_and_two_object_scores_keep_their_meaning():
    ds = ShapesDataset(length=100, seed=23)
    for i in range(100):
        result = score(ds.render(i), ds.scene(i).caption)
        n_rel = len(ds.scene(i).objects) - 1
        assert len(result.relations_ok) == n_rel
        if n_rel:
            assert result.relations_ok == (result.position_ok,)


# --- caption-aware horizontal flip ------------------------------------------------------


def test_caption_aware_flip_mirrors_image_boxes_and_left_right():
    plain = ShapesDataset(length=400, seed=8, three_object_share=1 / 3)
    flip = ShapesDataset(length=400, seed=8, three_object_share=1 / 3, flip=True)
    flipped = [i for i in range(400) if flip.flipped(i)]
    assert 150 < len(flipped) < 250 and not any(plain.flipped(i) for i in range(400))
    swap = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "above",
            "below": "below"}
    stale = []
    for i in range(400):
        a, b = plain.scene(i), flip.scene(i)
        if i not in flipped:
            assert b == a and np.array_equal(flip.render(i), plain.render(i))
            continue
        assert np.array_equal(flip.render(i), plain.render(i)[:, ::-1])
        assert flip[i]["caption"] == b.caption
        assert b.spec.relations == tuple(swap[r] for r in a.spec.relations)
        for oa, ob in zip(a.objects, b.objects):
            assert ob.bbox == (32 - oa.bbox[2], oa.bbox[1], 32 - oa.bbox[0], oa.bbox[3])
        if i < 150:  # the flipped caption describes the flipped image, the original one mostly not
            assert score(flip.render(i), b.caption).overall
            if any(r in ("to the left of", "to the right of") for r in a.spec.relations):
                stale.append(score(flip.render(i), a.caption).position_ok)
    # (identical objects, e.g. two blue squares, can still satisfy a mirrored left/right chain)
    assert len(stale) >= 30 and sum(stale) <= 0.1 * len(stale)
    before = [flip.flipped(i) for i in range(400)]
    flip.set_epoch(1)
    assert [flip.flipped(i) for i in range(400)] != before
    flip.set_epoch(0)
    assert [flip.flipped(i) for i in range(400)] == before
    assert load_builtin("shapes3", length=50, flip=True).flip
