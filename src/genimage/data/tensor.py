"""An in-memory dataset over a tensor of images (for tests, notebooks and latent caches)."""

from __future__ import annotations

from typing import Sequence

import torch

from genimage.data.types import ImageDataset
from genimage.errors import GenimageError


class TensorImageDataset(ImageDataset):
    """Args:
        images: ``(N, C, H, W)`` float tensor in ``[-1, 1]``.
        labels: Optional ``N`` class labels.
        captions: Optional ``N`` captions.
        class_names: Optional class names (default ``"0"``, ``"1"``, ...).
    """

    def __init__(self, images: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
                 captions: Sequence[str] | None = None, class_names: list[str] | None = None) -> None:
        if images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise GenimageError(f"images must be (N, C, H, W) with H == W, got {tuple(images.shape)}")
        self.images = images.float()
        self.labels = None if labels is None else [int(v) for v in labels]
        self.captions = None if captions is None else list(captions)
        for name, seq in (("labels", self.labels), ("captions", self.captions)):
            if seq is not None and len(seq) != len(images):
                raise GenimageError(f"{len(seq)} {name} for {len(images)} images")
        self.num_classes = (max(self.labels) + 1) if self.labels else None
        self.class_names = class_names or ([str(i) for i in range(self.num_classes)] if self.num_classes else None)
        self.has_captions = self.captions is not None
        self.image_size = images.shape[-1]
        self.channels = images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item: dict = {"image": self.images[i]}
        if self.labels is not None:
            item["label"] = self.labels[i]
        if self.captions is not None:
            item["caption"] = self.captions[i]
        return item

    def manifest_info(self) -> dict:
        return {"kind": "tensor", "count": len(self), "shape": list(self.images.shape[1:])}
