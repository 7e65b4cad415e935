"""Pinned hashes of existing ``shapes`` items: the bundled ``shapes`` model was trained on them.

Three-object scenes (issue 22) are an addition; these hashes were recorded before that change
and must never move: the default dataset's renders, captions, layouts and the evaluation
prompts stay byte-identical for every split, size and seed pinned here.
"""

from __future__ import annotations

import hashlib

import pytest

from genimage.data.builtin import load_builtin
from genimage.data.shapes import ShapesDataset, sample_captions

INDICES = [*range(12), 4_321, 999_999]

PINNED = {
    ("train", 32, 0): "6346acaecef992f048c60d3e3ab8d6500253daa810b79d57951181bede166fa9",
    ("train", 64, 3): "2e51f09b29fd360708f6b609a0a802a030b41de6a9c0b4a91bb076b8883cc898",
    ("eval", 32, 0): "ffc44b9b9ef9388ed9557bb71038900976ff6abd07f1376c64c0f13324163ed4",
    ("eval", 64, 1): "902e599c2cd9cece69478457420350b0eb7d47f6574a5b3028bf0ae55a23f30e",
    ("all", 32, 7): "3ed7a99a87fe03c248cd9fea7afd10dbade2e27c672e1c8453799a105dc5ce24",
    "builtin": "c3d031dd80aae8c31f8abb33198f0814bf4598bc6c2d6292aeeb58da50fb6216",
    ("prompts", "train"): "73b3b01f6325a0584591586701c27ebe04b1235e62896b0a9ca67862fafdf4a2",
    ("prompts", "eval"): "243e2e7c64db5fc87e9d521b7b6df9084bc8f014c75775ee61791123cde38fb7",
}
"""Recorded on the code before issue 22 (commit f375cf4)."""


def _digest(ds: ShapesDataset, indices) -> str:
    h = hashlib.sha256()
    for i in indices:
        scene = ds.scene(i)
        h.update(ds.render(i).tobytes())
        h.update(ds[i]["image"].numpy().tobytes())
        h.update(scene.caption.encode())
        for obj in scene.objects:
            h.update(repr((obj.colour, obj.shape, obj.bbox, obj.rgb)).encode())
    return h.hexdigest()


@pytest.mark.parametrize("split,size,seed", [("train", 32, 0), ("train", 64, 3), ("eval", 32, 0), ("eval", 64, 1), ("all", 32, 7)])
def test_existing_items_are_byte_identical(split, size, seed):
    ds = ShapesDataset(length=10**6, image_size=size, split=split, seed=seed)
    assert _digest(ds, INDICES) == PINNED[(split, size, seed)]


def test_builtin_shapes_training_items_are_byte_identical():
    # The bundled model's data: builtin:shapes, train split, seed 0, 250,000 items.
    ds = load_builtin("shapes", length=250_000)
    assert _digest(ds, range(0, 250_000, 12_500)) == PINNED["builtin"]


def test_evaluation_prompts_are_identical():
    for split in ("train", "eval"):
        text = "\n".join(sample_captions(500, seed=0, split=split))
        assert hashlib.sha256(text.encode()).hexdigest() == PINNED[("prompts", split)]
