"""Classifier-free guidance as a model wrapper (Ho & Salimans 2022, Eq. 6).

``x0_guided = x0_uncond + w * (x0_cond - x0_uncond)``. Because every prediction type is
an affine function of ``(x0, eps)`` at fixed ``x`` and ``t``, guiding ``x0`` and ``eps``
with the same weight equals guiding ``eps`` (as in the paper) or ``v``/velocity.
The wrapper evaluates both branches in one doubled batch.

Optionally guidance is applied only inside an interval of path times ``lo <= t <= hi``
(Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and
Distribution Quality in Diffusion Models", Sec. 3): outside it the conditional prediction
is used alone, which also saves the unconditional network evaluation there.
"""

from __future__ import annotations

import torch
from torch import nn

from genimage.models.denoiser import Cond, Prediction


def null_condition(cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The unconditional counterpart of ``cond``: labels -1, text masked out entirely."""
    out: dict[str, torch.Tensor] = {}
    for key, value in cond.items():
        if key == "label":
            out[key] = torch.full_like(value, -1)
        elif key == "text_mask":
            out[key] = torch.zeros_like(value)
        else:
            out[key] = torch.zeros_like(value)
    return out


def concat_conditions(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate two conditioning dicts with the same keys along the batch dimension."""
    if set(a) != set(b):
        from genimage.errors import GenimageError

        raise GenimageError(f"conditioning keys differ: {sorted(a)} vs {sorted(b)}; build both with the same Conditioner")
    return {k: torch.cat([a[k], b[k]], dim=0) for k in a}


class CFGDenoiser(nn.Module):
    """Guided denoiser.

    Args:
        model: A denoiser ``(x, t, cond) -> Prediction`` with a ``path`` attribute.
        guidance: Guidance weight ``w``; 1 means no guidance, 0 means unconditional.
        uncond: Conditioning of the unconditional branch (for example a negative prompt's
            text embedding); default: :func:`null_condition` of ``cond``.
        interval: ``(lo, hi)``: guide only at path times ``lo <= t <= hi``; ``None`` = always.
    """

    def __init__(self, model: nn.Module, guidance: float, uncond: Cond = None,
                 interval: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.path = model.path
        self.guidance = float(guidance)
        self.uncond = uncond
        self.interval = None if interval is None else (float(interval[0]), float(interval[1]))

    def outside_interval(self, t) -> torch.Tensor | bool:
        """``True`` / ``False`` when every sample's time is outside / inside the guidance
        interval, else a per-sample BoolTensor (True where outside)."""
        if self.interval is None:
            return False
        lo, hi = self.interval
        t = torch.as_tensor(t)
        outside = (t < lo) | (t > hi)
        if bool(outside.all()) or not bool(outside.any()):
            return bool(outside.all())
        return outside

    def forward(self, x: torch.Tensor, t, cond: Cond = None) -> Prediction:
        if cond is None or self.guidance == 1.0:
            return self.model(x, t, cond)
        outside = self.outside_interval(t)
        if outside is True:
            return self.model(x, t, cond)
        uncond = self.uncond if self.uncond is not None else null_condition(cond)
        if self.guidance == 0.0 and outside is False:
            return self.model(x, t, uncond)
        t2 = t if not torch.is_tensor(t) or t.ndim == 0 else torch.cat([t, t])
        both = self.model(torch.cat([x, x]), t2, concat_conditions(cond, uncond))
        w = self.guidance
        if outside is not False:  # per-sample times straddling the interval: no guidance where outside
            w = torch.where(outside, 1.0, w).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        c0, u0 = both.x0.chunk(2)
        ce, ue = both.eps.chunk(2)
        return Prediction(u0 + w * (c0 - u0), ue + w * (ce - ue))
