"""Exponential moving average of weights (Polyak averaging; used by DDPM, EDM, StyleGAN)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Keeps ``ema = decay * ema + (1 - decay) * param`` for every parameter and buffer.

    Args:
        model: The module to track.
        decay: Target decay; the effective decay warms up as ``min(decay, (1 + n) / (10 + n))``
            after ``n`` updates so early weights are forgotten fast.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)
        self.updates = updates
