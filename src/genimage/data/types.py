"""The item format every genimage dataset returns, and the image convention behind it.

A dataset item is a dict (:class:`DatasetItem`)::

    {"image": FloatTensor (C, H, W) in [-1, 1],   # always present
     "label": int,                                # only when the dataset has classes
     "caption": str}                              # only when the dataset has captions

Datasets are :class:`torch.utils.data.Dataset` subclasses whose ``__getitem__(i)`` is
deterministic (the same ``i`` gives the same item, bit for bit) and which carry the
attributes declared on :class:`ImageDataset`. Pixel values map linearly from uint8:
``0 -> -1.0`` and ``255 -> +1.0`` (:func:`image_from_uint8` / :func:`image_to_uint8`).
Procedural datasets draw item ``i``'s randomness from :func:`item_rng` ``(seed, i, stream)``
only, so any item can be produced alone, in any order, by any worker.
"""

from __future__ import annotations

import random
from typing import NotRequired, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from genimage.errors import GenimageError

SPLITS = ("train", "eval", "all")
"""Split names shared by the built-in datasets; each dataset documents what they hold."""


class DatasetItem(TypedDict):
    """One dataset item.

    Attributes:
        image: FloatTensor ``(C, H, W)`` with values in ``[-1, 1]``.
        label: Class index in ``[0, num_classes)``; present only if the dataset has classes.
        caption: Text describing the image; present only if the dataset has captions.
    """

    image: torch.Tensor
    label: NotRequired[int]
    caption: NotRequired[str]


class ImageDataset(Dataset):
    """Base class for genimage datasets: declares the attributes every dataset sets.

    Attributes:
        num_classes: Number of classes, or ``None`` for an unlabeled dataset.
        class_names: ``num_classes`` display names (index = label), or ``None``.
        has_captions: Whether items carry a ``"caption"``.
        image_size: Side of the square images, in pixels (``H == W == image_size``).
        channels: ``C`` of ``item["image"]`` (1 = grayscale, 3 = RGB).
    """

    num_classes: int | None = None
    class_names: list[str] | None = None
    has_captions: bool = False
    image_size: int
    channels: int

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> DatasetItem:  # pragma: no cover - abstract
        raise NotImplementedError


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise :class:`GenimageError`."""
    if split not in SPLITS:
        raise GenimageError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def check_index(index: int, length: int) -> int:
    """Normalise a (possibly negative) item index or raise ``IndexError`` like a list does."""
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of length {length}")
    return index


def item_rng(seed: int, index: int, stream: int = 0) -> random.Random:
    """The random generator of one item: a function of ``(seed, index, stream)`` only.

    Args:
        seed: Dataset seed in ``[0, 2**61)``.
        index: Item index in ``[0, 2**64)``.
        stream: Independent stream of the same item in ``[0, 8)`` (e.g. 0 for content,
            1 for layout), so changing how one part is drawn leaves the others alone.

    Draw from it with ``random()`` only (see :func:`uniform_int`): Python guarantees that
    sequence for an integer seed across versions, so items do not change with upgrades.
    """
    if not (0 <= seed < 2**61 and 0 <= index < 2**64 and 0 <= stream < 8):
        raise GenimageError(
            f"need 0 <= seed < 2**61, 0 <= index < 2**64 and 0 <= stream < 8; got {seed}, {index}, {stream}"
        )
    return random.Random(((seed * 8 + stream) << 64) | index)


def uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` (inclusive) from one ``rng.random()`` draw."""
    return lo + int(rng.random() * (hi - lo + 1))


_UINT8_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def image_from_uint8(array: np.ndarray) -> torch.Tensor:
    """Convert a uint8 image ``(H, W)`` or ``(H, W, C)`` to a float tensor ``(C, H, W)`` in [-1, 1]."""
    if array.dtype != np.uint8:
        raise GenimageError(f"expected a uint8 image array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    # A lookup table is several times faster than torch arithmetic on tiny images.
    return torch.from_numpy(_UINT8_TO_FLOAT[np.ascontiguousarray(array.transpose(2, 0, 1))])


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Convert a float tensor ``(C, H, W)`` in [-1, 1] to a uint8 array ``(H, W, C)`` (rounded, clipped)."""
    if image.ndim != 3:
        raise GenimageError(f"expected an image tensor (C, H, W), got shape {tuple(image.shape)}")
    array = ((image.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255)
    return array.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
