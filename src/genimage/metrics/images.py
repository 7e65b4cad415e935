"""The image batches every metric accepts: validated once, here (a module below both the
feature networks and the Inception loader, so neither imports the other for it)."""

from __future__ import annotations

import torch

from genimage.errors import GenimageError


def check_images(images: torch.Tensor, channels: int | None = None, what: str = "images") -> torch.Tensor:
    """Validate an ``(N, C, H, W)`` float batch (``C == channels`` if given); return it as float32 CPU."""
    if not isinstance(images, torch.Tensor):
        raise GenimageError(f"{what} must be a torch tensor (N, C, H, W) in [-1, 1], got {type(images).__name__}")
    if images.ndim != 4:
        raise GenimageError(f"{what} must have shape (N, C, H, W), got {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise GenimageError(f"{what} have {images.shape[1]} channel(s) but this network expects {channels}")
    images = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all():
        raise GenimageError(f"{what} contain NaN or inf")
    return images
