"""A dataset of cached autoencoder latents that trains a diffusion model like an image dataset."""

from __future__ import annotations

from typing import Sequence

import torch

from genimage.data.tensor import TensorImageDataset
from genimage.errors import GenimageError


class LatentDataset(TensorImageDataset):
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
        super().__init__(latents, labels, captions)
        self.latents = self.images
        self.num_classes = num_classes  # the source dataset's, not inferred from the labels present
        self.class_names = class_names
        self.source_image_size = int(source_image_size)
        self.source_channels = int(source_channels)
        self.cache_key = cache_key

    def manifest_info(self) -> dict:
        return {"kind": "latents", "count": len(self), "latent_shape": list(self.latents.shape[1:]),
                "source_image_size": self.source_image_size, "source_channels": self.source_channels,
                "cache_key": self.cache_key}
