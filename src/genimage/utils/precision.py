"""Choosing bf16 or fp32 by what the hardware does fast.

bf16 autocast is a large win where the matrix units support it (CUDA GPUs; x86 CPUs with
AMX or AVX512-BF16, where bf16 matmul measured ~6x fp32), and a large loss where they do
not: on an AVX2-only AMD EPYC, bf16 matmul ran at 0.7 GFLOP/s against 28 GFLOP/s fp32 and
a DiT training step was ~10x slower. So "auto" measures nothing at run time; it asks the
CPU for the instruction sets that make bf16 fast.
"""

from __future__ import annotations

import torch


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bf16 autocast should be faster than fp32 on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:  # older torch
        return False


def resolve_bf16(choice: bool | None, device: str | torch.device = "cpu") -> bool:
    """``None`` means auto (:func:`bf16_is_fast`); booleans are kept."""
    return bf16_is_fast(device) if choice is None else bool(choice)
