"""Tests for the built-in dataset registry (src/genimage/data/builtin.py) and item format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genimage.data.builtin import BUILTIN_DATASETS, PHOTO_NAMES, DigitsDataset, PhotosDataset, load_builtin
from genimage.data.shapes import ShapesDataset
from genimage.data.types import ImageDataset, image_from_uint8, image_to_uint8, item_rng, uniform_int
from genimage.errors import GenimageError


def _check_items(ds: ImageDataset, n: int = 8) -> None:
    """The item contract: keys, shape, dtype, range, attributes, determinism."""
    assert isinstance(ds, ImageDataset)
    for i in range(min(n, len(ds))):
        item = ds[i]
        x = item["image"]
        assert x.dtype == torch.float32 and x.shape == (ds.channels, ds.image_size, ds.image_size)
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert ("caption" in item) == ds.has_captions
        assert ("label" in item) == (ds.num_classes is not None)
        if ds.num_classes is not None:
            assert isinstance(item["label"], int) and 0 <= item["label"] < ds.num_classes
            assert len(ds.class_names) == ds.num_classes
        assert torch.equal(x, ds[i]["image"])


def test_registry_names_and_unknown_name():
    assert BUILTIN_DATASETS.names() == ["digits", "photos", "shapes", "shapes3"]
    with pytest.raises(GenimageError, match="digits, photos, shapes, shapes3"):
        load_builtin("cifar10")


def test_bad_split_and_unknown_options():
    with pytest.raises(GenimageError, match="split"):
        load_builtin("digits", split="test")
    with pytest.raises(GenimageError, match="valid options: none"):
        load_builtin("digits", supersample=2)
    with pytest.raises(GenimageError, match="held_out"):
        load_builtin("shapes", colour="red")


def test_digits_values_labels_and_splits():
    from sklearn.datasets import load_digits

    data = load_digits()
    train, evalset, full = (load_builtin("digits", split=s) for s in ("train", "eval", "all"))
    assert (len(train), len(evalset), len(full)) == (1500, 297, 1797)
    assert train.image_size == 8 and train.channels == 1 and train.num_classes == 10
    assert train.class_names == [str(d) for d in range(10)]
    _check_items(train)
    _check_items(evalset)
    item = evalset[3]
    expected = torch.from_numpy(data.images[1503]).float() / 8 - 1
    assert torch.equal(item["image"][0], expected)
    assert item["label"] == int(data.target[1503])
    assert item["caption"] == f"a handwritten digit {item['label']}"
    values = torch.stack([full[i]["image"] for i in range(len(full))])
    assert values.min() == -1.0 and values.max() == 1.0
    assert sorted({full[i]["label"] for i in range(len(full))}) == list(range(10))


def test_digits_upscaled_and_length():
    ds = load_builtin("digits", image_size=16, length=40)
    assert len(ds) == 40
    _check_items(ds)
    small = DigitsDataset(8)[0]["image"][0]
    big = ds[0]["image"][0]
    # Bilinear upscaling preserves the mean brightness roughly and stays within [-1, 1].
    assert abs(float(big.mean() - small.mean())) < 0.05
    with pytest.raises(GenimageError):
        load_builtin("digits", length=2000)


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage")
    return load_builtin("photos", length=300, seed=0)


def test_photos_items_and_determinism(photos):
    assert photos.image_size == 32 and photos.channels == 3 and not photos.has_captions
    assert photos.num_classes is None
    _check_items(photos)
    again = load_builtin("photos", length=300, seed=0)
    other = load_builtin("photos", length=300, seed=1)
    assert all(torch.equal(photos[i]["image"], again[i]["image"]) for i in range(5))
    assert not any(torch.equal(photos[i]["image"], other[i]["image"]) for i in range(5))
    assert not torch.equal(photos[0]["image"], photos[1]["image"])
    # Real photos: not flat, plenty of distinct values.
    assert float(photos[0]["image"].std()) > 0.01


def test_photos_splits_use_disjoint_regions(photos):
    from genimage.data.builtin import _photo

    used = set()
    for split, ds in (("train", photos), ("eval", load_builtin("photos", split="eval", length=300))):
        for i in range(300):
            name, (x0, y0, x1, y1) = ds.crop_box(i)
            used.add(name)
            width, height = _photo(name).size
            cut = round(height * PhotosDataset.TRAIN_FRACTION)
            assert x1 - x0 == y1 - y0 >= 32 and 0 <= x0 and x1 <= width
            assert (y1 <= cut) if split == "train" else (y0 >= cut and y1 <= height)
    assert used == set(PHOTO_NAMES)
    big = load_builtin("photos", image_size=64, length=4)
    _check_items(big, 4)


def test_shapes_through_loader_and_batching():
    ds = load_builtin("shapes", length=16, seed=3, held_out=[("red", "circle")], two_object_prob=1.0)
    assert isinstance(ds, ShapesDataset) and ds.image_size == 32 and len(ds) == 16
    assert ds.held_out == {("red", "circle")}
    _check_items(ds)
    assert len(load_builtin("shapes")) == 100_000
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert batch["image"].shape == (8, 3, 32, 32) and len(batch["caption"]) == 8
    assert all(" " in c for c in batch["caption"])


def test_uint8_conversions_round_trip():
    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    x = image_from_uint8(array)
    assert x.shape == (3, 5, 7) and x.min() >= -1 and x.max() <= 1
    assert float(image_from_uint8(np.array([[0, 255]], dtype=np.uint8)).abs().min()) == 1.0
    assert np.array_equal(image_to_uint8(x), array)
    with pytest.raises(GenimageError):
        image_from_uint8(array.astype(np.float32))


def test_item_rng_is_a_function_of_seed_index_stream():
    draws = lambda *k: [uniform_int(item_rng(*k), 0, 10**9) for _ in range(1)]  # noqa: E731
    assert draws(0, 5, 0) == draws(0, 5, 0)
    assert len({tuple(draws(*k)) for k in [(0, 5, 0), (1, 5, 0), (0, 6, 0), (0, 5, 1)]}) == 4
    rng = item_rng(0, 0)
    assert {uniform_int(rng, 2, 4) for _ in range(200)} == {2, 3, 4}
    with pytest.raises(GenimageError):
        item_rng(-1, 0)
