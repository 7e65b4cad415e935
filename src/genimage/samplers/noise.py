"""Explicit, per-sample randomness (EDM's ``StackedRandomGenerator`` idea).

Image *i* of a batch must depend only on seed *i*, so every random draw in a sampler is
made per sample from that sample's own ``torch.Generator``.
"""

from __future__ import annotations

from typing import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def generators_for_seeds(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], generator: Generators = None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` ``(B, ...)``.

    Args:
        shape: Full shape including the batch dimension.
        generator: A list of ``B`` generators (sample *i* drawn from generator *i*), one
            generator for the whole batch, or ``None`` for the global generator.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=dtype) for g in generator])
