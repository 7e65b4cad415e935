"""Built-in datasets that need no download: ``digits``, ``photos``, ``shapes`` and ``shapes3``.

``load_builtin(name, ...)`` builds one by name from :data:`BUILTIN_DATASETS`:

* ``digits``: scikit-learn's 8x8 handwritten digits (Alpaydin & Kaynak, 1998, UCI "Optical
  Recognition of Handwritten Digits"; 1797 images shipped inside the scikit-learn wheel).
  1 channel, 10 classes (label = digit), caption ``"a handwritten digit 3"``.
* ``photos``: square crops of the colour photographs bundled in scikit-image's wheel.
  RGB, no labels, no captions. Needs ``scikit-image`` installed.
* ``shapes``: captioned coloured shapes with held-out compositions
  (:mod:`genimage.data.shapes`).
* ``shapes3``: ``shapes`` plus three-object scenes with two relations (option
  ``three_object_share``, default 1/3; ``shapes`` is the same dataset with share 0).

All items follow :mod:`genimage.data.types`: ``{"image": (C, H, W) in [-1, 1], ...}``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genimage.data.shapes import DEFAULT_HELD_OUT, DEFAULT_THREE_OBJECT_SHARE, ShapesDataset
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
from genimage.registry import Registry

BUILTIN_DATASETS: Registry[Callable[..., ImageDataset]] = Registry("built-in dataset")
"""name -> factory ``(image_size, split, seed, length, *, options...) -> ImageDataset``;
its keyword-only parameters are the dataset's options."""


class DigitsDataset(ImageDataset):
    """scikit-learn's 8x8 handwritten digits as a labelled, captioned dataset.

    Pixel values 0..16 (ink) map linearly to [-1, 1]; for ``image_size != 8`` the 8x8
    image is resized bilinearly (``torch.nn.functional.interpolate``, ``align_corners=False``,
    antialiased when shrinking). Splits: ``"train"`` is images 0..1499, ``"eval"`` the last
    297 (1500..1796), ``"all"`` all 1797, in scikit-learn's order.

    Args:
        image_size: Output side in pixels (default 8, the native size: no invented pixels,
            and fast enough to train a model on a CPU in minutes).
        split: ``"train"``, ``"eval"`` or ``"all"``.
        length: Use only the first ``length`` images of the split (default: all).
    """

    num_classes = 10
    class_names = [str(d) for d in range(10)]
    has_captions = True
    channels = 1
    NUM_TRAIN = 1500

    def __init__(self, image_size: int = 8, split: str = "train", length: int | None = None) -> None:
        from sklearn.datasets import load_digits

        check_split(split)
        if image_size < 2:
            raise GenimageError(f"digits image_size must be >= 2, got {image_size}")
        data = load_digits()
        images = torch.from_numpy(data.images.astype(np.float32)) / 8.0 - 1.0  # (N, 8, 8)
        labels = data.target.astype(np.int64)
        n_train = self.NUM_TRAIN
        keep = {"train": slice(0, n_train), "eval": slice(n_train, None), "all": slice(None)}[split]
        self.images, self.labels = images[keep].contiguous(), labels[keep]
        if length is not None:
            if not 1 <= length <= len(self.labels):
                raise GenimageError(
                    f"digits split {split!r} has {len(self.labels)} images; "
                    f"pass length in [1, {len(self.labels)}]"
                )
            self.images, self.labels = self.images[:length], self.labels[:length]
        self.image_size = int(image_size)
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> DatasetItem:
        index = check_index(index, len(self))
        image = self.images[index][None]  # (1, 8, 8)
        if self.image_size != 8:
            image = F.interpolate(
                image[None],
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.image_size < 8,
            )[0]
        label = int(self.labels[index])
        return {"image": image.clone(), "label": label, "caption": f"a handwritten digit {label}"}


PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
)
"""Colour photographs shipped inside the scikit-image wheel (no pooch download needed).
``retina`` (mostly black, 1411 px) and the grayscale/synthetic images are left out."""


@functools.cache
def _photo(name: str) -> Image.Image:
    """One bundled photo as an RGB PIL image (loaded once per process)."""
    try:
        import skimage.data as skdata
    except ImportError:
        raise GenimageError("the 'photos' dataset needs scikit-image: pip install scikit-image") from None
    array = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))


class PhotosDataset(ImageDataset):
    """Random square crops of the photos in :data:`PHOTO_NAMES`, deterministic per index.

    Item ``i`` uses ``item_rng(seed, i)`` to pick a photo (uniformly), a crop side
    ``c = image_size * s`` with the scale ``s`` log-uniform in ``[1, side / image_size]``
    (``side`` = the shorter side of the split's region), and a uniform position; the crop
    is resized to ``image_size`` with a Lanczos filter. So an image is a random crop of a
    photo downscaled by a random factor, from full resolution to the whole photo.

    Splits are disjoint pixel regions: ``"train"`` crops come from the top 3/4 of each photo,
    ``"eval"`` from the bottom 1/4, ``"all"`` from the whole photo. Photos whose region is
    smaller than ``image_size`` are skipped.

    Args:
        image_size: Output side in pixels (default 32).
        split: ``"train"``, ``"eval"`` or ``"all"``.
        seed: Seed; item ``i`` depends only on ``(seed, i)``.
        length: Number of items (crops are generated on the fly; default 10_000).
    """

    channels = 3
    TRAIN_FRACTION = 0.75

    def __init__(
        self, image_size: int = 32, split: str = "train", seed: int = 0, length: int = 10_000
    ) -> None:
        check_split(split)
        if image_size < 1 or length < 1 or seed < 0:
            raise GenimageError(
                f"photos needs image_size >= 1, length >= 1 and seed >= 0, got {image_size}, {length}, {seed}"
            )
        self.regions: list[tuple[str, tuple[int, int, int, int]]] = []
        for name in PHOTO_NAMES:
            width, height = _photo(name).size
            cut = int(round(height * self.TRAIN_FRACTION))
            top, bottom = {"train": (0, cut), "eval": (cut, height), "all": (0, height)}[split]
            if min(bottom - top, width) >= image_size:
                self.regions.append((name, (0, top, width, bottom)))
        if not self.regions:
            raise GenimageError(
                f"photos split {split!r} has no photo region of at least {image_size} px; lower image_size"
            )
        self.image_size, self.split, self.seed, self.length = int(image_size), split, int(seed), int(length)

    def __len__(self) -> int:
        return self.length

    def crop_box(self, index: int) -> tuple[str, tuple[int, int, int, int]]:
        """The photo name and crop box ``(x0, y0, x1, y1)`` in its pixels used for item ``index``."""
        index = check_index(index, self.length)
        rng = item_rng(self.seed, index)
        name, (left, top, right, bottom) = self.regions[uniform_int(rng, 0, len(self.regions) - 1)]
        shorter = min(right - left, bottom - top)
        scale = math.exp(rng.random() * math.log(shorter / self.image_size))  # log-uniform in [1, max]
        side = min(int(round(self.image_size * scale)), shorter)
        x0 = uniform_int(rng, left, right - side)
        y0 = uniform_int(rng, top, bottom - side)
        return name, (x0, y0, x0 + side, y0 + side)

    def __getitem__(self, index: int) -> DatasetItem:
        name, box = self.crop_box(index)
        size = (self.image_size, self.image_size)
        crop = _photo(name).resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        return {"image": image_from_uint8(np.asarray(crop))}


@BUILTIN_DATASETS.register("digits")
def _digits(image_size: int | None, split: str, seed: int, length: int | None) -> ImageDataset:
    del seed  # the digits are a fixed set
    return DigitsDataset(8 if image_size is None else image_size, split, length)


@BUILTIN_DATASETS.register("photos")
def _photos(image_size: int | None, split: str, seed: int, length: int | None) -> ImageDataset:
    return PhotosDataset(
        32 if image_size is None else image_size, split, seed, 10_000 if length is None else length
    )


@BUILTIN_DATASETS.register("shapes")
def _shapes(
    image_size: int | None,
    split: str,
    seed: int,
    length: int | None,
    *,
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
    two_object_prob: float = 0.5,
    three_object_share: float = 0.0,
    supersample: int = 4,
    flip: bool = False,
) -> ImageDataset:
    return ShapesDataset(
        100_000 if length is None else length,
        32 if image_size is None else image_size,
        split,
        seed,
        held_out=held_out,
        two_object_prob=two_object_prob,
        three_object_share=three_object_share,
        supersample=supersample,
        flip=flip,
    )


@BUILTIN_DATASETS.register("shapes3")
def _shapes3(
    image_size: int | None,
    split: str,
    seed: int,
    length: int | None,
    *,
    held_out: Iterable[tuple[str, str]] = DEFAULT_HELD_OUT,
    two_object_prob: float = 0.5,
    three_object_share: float = DEFAULT_THREE_OBJECT_SHARE,
    supersample: int = 4,
    flip: bool = False,
) -> ImageDataset:
    """``shapes`` with three-object scenes: a third of the items by default (issue 22)."""
    return _shapes(image_size, split, seed, length, held_out=held_out, two_object_prob=two_object_prob,
                   three_object_share=three_object_share, supersample=supersample, flip=flip)


def load_builtin(
    name: str,
    *,
    image_size: int | None = None,
    split: str = "train",
    seed: int = 0,
    length: int | None = None,
    **kwargs: Any,
) -> ImageDataset:
    """Build a built-in dataset by name.

    Args:
        name: ``"digits"``, ``"photos"``, ``"shapes"`` or ``"shapes3"``.
        image_size: Output side in pixels; ``None`` for the dataset's default
            (digits 8, photos 32, shapes 32).
        split: ``"train"``, ``"eval"`` or ``"all"`` (each dataset documents its split).
        seed: Seed of the procedural datasets (photos, shapes); ignored by digits.
        length: Number of items; ``None`` for the default (digits: the whole split,
            photos 10_000, shapes 100_000).
        **kwargs: Dataset-specific options, e.g. ``held_out``, ``two_object_prob`` and
            ``supersample`` for shapes, and ``three_object_share`` and ``flip`` (caption-aware horizontal flip) for shapes and shapes3.

    Returns:
        The dataset; its items are :class:`genimage.data.types.DatasetItem` dicts.

    Raises:
        GenimageError: For an unknown name, split or option, or a bad value.
    """
    factory = BUILTIN_DATASETS.get(name)
    options = [p.name for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        valid = ", ".join(options) if options else "none"
        raise GenimageError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {valid}"
        )
    return factory(image_size, check_split(split), seed, length, **kwargs)
