"""Divergence guard of the trainer: skip non-finite steps, stop a run that blows up.

Three checks, each before anything bad reaches the weights that are saved:

* **gradients** (before every optimizer step, in ``StepContext.clip``): a NaN/inf global
  gradient norm (or, in a single process, a NaN/inf loss before its backward pass) raises
  :class:`SkipStep`, so that optimizer does not step; the trainer skips the iteration:
  no EMA update, the step counter stays, the skip is counted and printed as a warning.
  Like mixed-precision loss scaling (Micikevicius et al. 2018, "Mixed Precision
  Training", Sec. 3.2), which skips updates whose gradients overflowed. A family with
  several optimizers (a GAN) keeps the updates made before the fault within that step.
* **loss** (after a step): a NaN/inf loss, or one more than ``explode_factor`` times the
  median of the run's first 10 losses (floored at 1), marks the step bad the same way.
* **weights** (before every checkpoint): NaN/inf weights, or weights whose largest
  magnitude grew more than ``explode_factor`` times (floored at 1) beyond where the run
  started, are never written: :class:`TrainingDiverged` stops the run and the last good
  checkpoint stays ``latest``.

``max_bad_steps`` bad steps in a row also raise :class:`TrainingDiverged`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

import torch

from genimage.errors import GenimageError

#: Losses of a run's first steps whose median is the scale an exploding loss is measured against.
REFERENCE_STEPS = 10


class SkipStep(Exception):
    """Raised inside a training step whose update must not happen (non-finite loss/gradient)."""


class TrainingDiverged(GenimageError):
    """The run diverged; nothing newer than the last good checkpoint was saved."""


def max_abs(tensors: Iterable[torch.Tensor]) -> float:
    """Largest magnitude among the floating-point ``tensors`` (``nan`` if any is NaN, 0 if none)."""
    out = 0.0
    for t in tensors:
        if t.is_floating_point() and t.numel():
            m = float(t.detach().abs().max())
            if math.isnan(m):
                return math.nan
            out = max(out, m)
    return out


def gradient_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``parameters`` (0 when none has one)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, 2.0)


@dataclass
class DivergenceGuard:
    """State of the checks (see the module docstring).

    Args:
        max_bad_steps: Bad steps in a row that stop the run (0 = never stop, only skip).
        explode_factor: A loss above this many times the early median, or weights this many
            times larger than at the start, count as diverged (0 = only non-finite values).
        bad_total: Bad (skipped) steps so far in the run.
        bad_in_a_row: Bad steps since the last good one.
    """

    max_bad_steps: int = 5
    explode_factor: float = 1e6
    bad_total: int = 0
    bad_in_a_row: int = 0

    def loss_problem(self, value: float, history: list[float]) -> str | None:
        """Why the loss ``value`` is bad given the good losses so far (``None``: it is fine)."""
        if not math.isfinite(value):
            return f"the loss is {value}"
        if self.explode_factor and history:
            ref = statistics.median(history[:REFERENCE_STEPS])
            limit = self.explode_factor * max(abs(ref), 1.0)
            if abs(value) > limit:
                return f"the loss {value:.3g} is over {self.explode_factor:g} x the early median loss {ref:.3g}"
        return None

    def weights_problem(self, tensors: Iterable[torch.Tensor], start_scale: float) -> str | None:
        """Why weights ``tensors`` must not be saved (``None``: they are fine)."""
        m = max_abs(tensors)
        if not math.isfinite(m):
            return "the weights hold NaN or inf values"
        if self.explode_factor and m > self.explode_factor * max(start_scale, 1.0):
            return f"the weights grew to magnitude {m:.3g} (from {start_scale:.3g} at the start)"
        return None

    def record_bad(self) -> bool:
        """Count a bad step; ``True`` when the run must stop."""
        self.bad_total += 1
        self.bad_in_a_row += 1
        return bool(self.max_bad_steps) and self.bad_in_a_row >= self.max_bad_steps

    def record_good(self) -> None:
        self.bad_in_a_row = 0

    def state(self) -> dict[str, int]:
        return {"bad_steps": self.bad_total, "bad_in_a_row": self.bad_in_a_row}

    def load(self, state: dict) -> None:
        self.bad_total = int(state.get("bad_steps", 0))
        self.bad_in_a_row = int(state.get("bad_in_a_row", 0))
