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
                 progress: Callable[[int], None] | None = None, **sample_kwargs) -> tuple[torch.Tensor, float]:
    """``n`` images (image ``i`` from seed ``seed + i``) and the seconds it took.

    ``sample_kwargs`` go to ``model.sample`` (e.g. ``options=`` for diffusion models).
    """
    out = []
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        c = cond[start:stop] if cond is not None else None
        gens = generators_for_seeds(list(range(seed + start, seed + stop)))
        out.append(model.sample(stop - start, c, gens, **sample_kwargs).float().cpu())
        if progress is not None:
            progress(stop)
    return torch.cat(out), time.perf_counter() - t0
