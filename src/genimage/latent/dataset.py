"""A dataset of cached autoencoder latents that trains a diffusion model like an image dataset."""

from __future__ import annotations

from typing import Sequence

import torch

from genimage.data.types import ImageDataset
from genimage.errors import GenimageError


class LatentDataset(ImageDataset):
    """Items ``{"image": latent (C, h, w), "label"?, "caption"?}`` in the order of the source dataset.

    ``image_size``/``channels`` are the *latent* geometry (what the backbone sees);
    ``source_image_size``/``source_channels`` the pixel geometry the latents decode to. Labels,
    class names and captions are the source dataset's.

    Args:
        latents: ``(N, C, h, w)`` scaled latents (``KLAutoencoder.encode``), ``h == w``.
        labels: Optional ``N`` labels.
        captions: Optional ``N`` captions.
        num_classes, class_names: The source dataset's classes (``None`` if unlabelled).
        source_image_size, source_channels: Pixel geometry of the source images.
        cache_key: Key of the latent cache entry the latents came from (for the manifest).
    """

    def __init__(self, latents: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
                 captions: Sequence[str] | None = None, *, num_classes: int | None = None,
                 class_names: list[str] | None = None, source_image_size: int, source_channels: int,
                 cache_key: str = "") -> None:
        if latents.ndim != 4 or latents.shape[2] != latents.shape[3]:
            raise GenimageError(f"latents must be (N, C, h, w) with h == w, got {tuple(latents.shape)}")
        self.latents = latents.float()
        self.labels = None if labels is None else [int(v) for v in labels]
        self.captions = None if captions is None else list(captions)
        for name, seq in (("labels", self.labels), ("captions", self.captions)):
            if seq is not None and len(seq) != len(latents):
                raise GenimageError(f"{len(seq)} {name} for {len(latents)} latents")
        self.num_classes = num_classes
        self.class_names = class_names
        self.has_captions = self.captions is not None
        self.image_size = int(latents.shape[-1])
        self.channels = int(latents.shape[1])
        self.source_image_size = int(source_image_size)
        self.source_channels = int(source_channels)
        self.cache_key = cache_key

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i: int) -> dict:
        item: dict = {"image": self.latents[i]}
        if self.labels is not None:
            item["label"] = self.labels[i]
        if self.captions is not None:
            item["caption"] = self.captions[i]
        return item

    def manifest_info(self) -> dict:
        return {"kind": "latents", "count": len(self), "latent_shape": list(self.latents.shape[1:]),
                "source_image_size": self.source_image_size, "source_channels": self.source_channels,
                "cache_key": self.cache_key}
