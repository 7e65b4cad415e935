"""Draw evaluation samples from any family with balanced conditioning and per-image seeds."""

from __future__ import annotations

import time
from typing import Callable

import torch

from genimage.families.base import GenerativeModel
from genimage.samplers.noise import generators_for_seeds


def conditions_for(config, n: int, dataset=None) -> list | None:
    """Balanced class labels (``i % classes``), captions of the first ``n`` dataset items (text
    models), or ``None`` (unconditional)."""
    if config.text_encoder:
        if dataset is None or not getattr(dataset, "has_captions", False):
            return None
        return [dataset[i % len(dataset)].get("caption", "") for i in range(n)]
    if config.num_classes:
        return [i % config.num_classes for i in range(n)]
    return None


def dataset_images(dataset, limit: int | None = None) -> torch.Tensor:
    """The first ``limit`` (default: all) images of a dataset as one ``(N, C, H, W)`` tensor."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([dataset[i]["image"] for i in range(n)])


@torch.no_grad()
def mean_bits_per_dim(model: GenerativeModel, images: torch.Tensor, batch_size: int = 500) -> float:
    """Mean ``model.bits_per_dim`` over ``images`` (families with a likelihood), in batches."""
    return float(torch.cat([model.bits_per_dim(images[i:i + batch_size])
                            for i in range(0, len(images), batch_size)]).mean())


@torch.no_grad()
def draw_samples(model: GenerativeModel, n: int, seed: int = 0, cond: list | None = None, batch_size: int = 250,
                 progress: Callable[[int], None] | None = None, share: tuple[int, int] = (0, 1),
                 **sample_kwargs) -> tuple[torch.Tensor | None, float]:
    """``n`` images (image ``i`` from seed ``seed + i``) and the seconds it took.

    ``sample_kwargs`` go to ``model.sample`` (e.g. ``options=`` for diffusion models). With
    ``share = (rank, world)`` of ``world > 1`` processes (an initialised process group),
    this process draws images ``rank::world`` and rank 0 receives all ``n`` (the same images
    as one process, since image ``i`` depends only on its seed); other ranks get ``None``.
    """
    rank, world = share
    index = list(range(rank, n, world))
    out = []
    t0 = time.perf_counter()
    for start in range(0, len(index), batch_size):
        part = index[start:start + batch_size]
        c = [cond[i] for i in part] if cond is not None else None
        gens = generators_for_seeds([seed + i for i in part])
        out.append(model.sample(len(part), c, gens, **sample_kwargs).float().cpu())
        if progress is not None:
            progress(min(n, (start + len(part)) * world))
    images = torch.cat(out) if out else torch.empty((0, *model.image_shape))
    if world > 1:
        from genimage.utils.distributed import gather_sharded

        images = gather_sharded(images, n, tuple(images.shape[1:]) if out else model.image_shape, rank, world)
    return images, time.perf_counter() - t0
