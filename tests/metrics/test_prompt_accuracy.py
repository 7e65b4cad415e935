"""Per-object-count prompt accuracy (src/genimage/metrics/prompt_accuracy.py) on real shapes images."""

from __future__ import annotations

import math

import pytest

from genimage.data.shapes import CaptionSpec, ShapesDataset
from genimage.data.shapes_analyzer import score
from genimage.metrics.prompt_accuracy import _summarize, summarize_by_objects

FLIP = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}


def test_by_objects_counts_each_relation_separately():
    ds = ShapesDataset(length=90, seed=3, split="all", three_object_share=1 / 3)
    captions, scores = [], []
    for i in range(90):
        spec = ds.scene(i).spec
        if len(spec.objects) == 3 and i % 2 == 0 and spec.objects[1] != spec.objects[2]:
            spec = CaptionSpec(spec.objects, spec.relation, FLIP[spec.relation2])  # a wrong second relation
        captions.append(spec.caption)
        scores.append(score(ds.render(i), spec))
    table = summarize_by_objects(scores)
    assert set(table) == {"1", "2", "3"}
    assert sum(r["n"] for r in table.values()) == 90
    one, two, three = table["1"], table["2"], table["3"]
    assert one["position"] is None and one["relation1"] is None and one["overall"] == 1.0
    assert two["relation2"] is None and two["relation1"] == two["position"] == two["overall"] == 1.0
    wrong = sum(1 for s in scores if len(s.spec.objects) == 3 and not s.relations_ok[1])
    assert wrong >= 5
    assert three["relation1"] == 1.0 and three["count"] == three["binding"] == 1.0
    assert three["relation2"] == pytest.approx(1 - wrong / three["n"])
    assert three["overall"] == three["position"] == pytest.approx(three["relation2"])
    top = _summarize(captions, scores)
    assert top.n_relations == two["n"] + three["n"]
    assert top.position == pytest.approx((two["n"] + three["n"] * three["position"]) / top.n_relations)


def test_single_object_only_has_nan_position():
    ds = ShapesDataset(length=10, two_object_prob=0.0)
    scores = [score(ds.render(i), ds.scene(i).caption) for i in range(10)]
    assert math.isnan(_summarize([s.spec.caption for s in scores], scores).position)
    assert list(summarize_by_objects(scores)) == ["1"]
