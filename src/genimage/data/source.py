"""Open a training data source given on the command line: ``builtin:NAME`` or a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genimage.errors import GenimageError


def open_dataset(spec: str, *, image_size: int | None = None, seed: int = 0, split: str = "train",
                 **options: Any):
    """Args:
        spec: ``builtin:digits``, ``builtin:shapes``, ``builtin:shapes3``, ``builtin:photos`` or an image folder path.
        image_size: Side of the training images (default: the dataset's own default).
        seed: Seed for procedural data and augmentation.
        split: ``train`` or ``eval`` (built-in datasets).
        **options: Passed to the dataset (``length``, ``crop``, ``flip``, ``on_bad_file``, ...).
    """
    if spec.startswith("builtin:"):
        from genimage.data.builtin import load_builtin

        return load_builtin(spec.split(":", 1)[1], image_size=image_size, split=split, seed=seed, **options)
    path = Path(spec)
    if not path.exists():
        raise GenimageError(f"data {spec!r} not found: give an image folder or builtin:digits|shapes|shapes3|photos")
    from genimage.data.folder import ImageFolderDataset

    return ImageFolderDataset(path, image_size=image_size or 32, seed=seed, **options)
