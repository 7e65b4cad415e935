"""Several augmented views of a dataset as one dataset (for data that is encoded once).

A latent cache encodes each item once, so the random crops and flips of an image folder would
be frozen at their first draw (:mod:`genimage.latent.cache`). :class:`AugmentedViews` lists
``views`` epochs of the source one after the other (item ``v * N + i`` is item ``i`` of epoch
``v``), so encoding it caches ``views`` different crops/flips of every image.
"""

from __future__ import annotations

from typing import Any

from genimage.data.types import DatasetItem, check_index
from genimage.errors import GenimageError


class AugmentedViews:
    """``views`` augmented passes over ``source`` (which must have ``set_epoch``).

    Args:
        source: A dataset whose items depend on ``set_epoch(e)`` (e.g. an image folder with
            ``crop="random"`` or ``flip=True``).
        views: Number of epochs listed (``>= 1``); the length is ``views * len(source)``.
    """

    def __init__(self, source: Any, views: int) -> None:
        if views < 1:
            raise GenimageError(f"views must be >= 1, got {views}")
        if not hasattr(source, "set_epoch"):
            raise GenimageError(f"{type(source).__name__} has no random augmentation (set_epoch); views need one")
        self.source, self.views = source, int(views)
        for attr in ("image_size", "channels", "num_classes", "class_names", "has_captions", "seed", "crop", "flip"):
            if hasattr(source, attr):
                setattr(self, attr, getattr(source, attr))

    def __len__(self) -> int:
        return self.views * len(self.source)

    def __getitem__(self, index: int) -> DatasetItem:
        index = check_index(index, len(self))
        view, i = divmod(index, len(self.source))
        self.source.set_epoch(view)
        return self.source[i]

    def manifest_info(self) -> dict[str, Any]:
        from genimage.data.manifest import build_manifest

        return {**build_manifest(self.source), "augmented_views": self.views}

    def __getattr__(self, name: str) -> Any:  # bad_files, write_bad_files_report, ...
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)
