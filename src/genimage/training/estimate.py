"""Before training: measured seconds per step, images/s and peak memory; a memory guard; and
a wall-clock budget that covers whole steps and the final sample grid.

:func:`estimate_training` runs a few warm-up steps on throw-away copies of the model and its
optimizers (the trainer's weights, optimizer state, data order and random generators are
untouched, so the run that follows is bit for bit the run without the estimate), at two
small batch sizes ``b1 < b2``, and fits ``time(b) = a + c * b`` and ``peak(b) = p + m * b``
(peak resident memory from ``resource.getrusage``'s ``ru_maxrss``, which only grows: the
probes run before the real steps allocate, smallest first). The requested batch's step time,
images/s and peak follow by extrapolation; :func:`check_memory` refuses a configuration whose
predicted peak exceeds the memory the system reports available (``MemAvailable`` of
``/proc/meminfo``), naming the largest batch that fits.

:class:`Budget` is what ``--max-minutes`` means: a step is started only if it can finish in
the budget (by the estimate, then by the slowest step seen so far), and the time of the
final sample grid is kept free, or the grid is skipped when it alone would not fit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import resource
import sys
import time
from pathlib import Path

import torch

from genimage.errors import GenimageError


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    """This process's resident set size now (bytes; the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (``MemAvailable``), or ``None`` if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclasses.dataclass
class TrainingEstimate:
    """Measured cost of training steps, extrapolated to the requested batch.

    Attributes:
        batch_size: The requested batch ``B``.
        seconds_per_step: Predicted seconds of one step at ``B``.
        images_per_s: ``B / seconds_per_step``.
        peak_bytes: Predicted peak resident memory of the process at ``B``.
        bytes_per_image: Extra peak memory per image of the batch (the fitted slope).
        available_bytes: Memory available when measured plus what the process already holds,
            or ``None`` if unknown.
        probes: ``[(batch, seconds, peak_bytes), ...]`` measured.
    """

    batch_size: int
    seconds_per_step: float
    images_per_s: float
    peak_bytes: int
    bytes_per_image: float
    available_bytes: int | None
    probes: list[tuple[int, float, int]]

    def largest_batch_that_fits(self, margin: float = 0.9) -> int:
        """Largest batch whose predicted peak is within ``margin`` of the available memory (0 if none)."""
        if self.available_bytes is None:
            return self.batch_size
        b0, _, p0 = self.probes[-1]
        room = margin * self.available_bytes - p0
        if self.bytes_per_image <= 0:
            return self.batch_size if room >= 0 else 0
        return max(0, int(b0 + room // self.bytes_per_image))

    def fits(self, margin: float = 0.9) -> bool:
        return self.available_bytes is None or self.peak_bytes <= margin * self.available_bytes

    def summary(self, steps: int, max_minutes: float = 0.0) -> str:
        """One line: seconds/step, images/s, peak memory and the time ``steps`` steps need."""
        gb = 1 << 30
        avail = "" if self.available_bytes is None else f" of {self.available_bytes / gb:.1f} GB available"
        line = (f"estimate: {self.seconds_per_step:.2f} s/step, {self.images_per_s:.1f} images/s, peak memory "
                f"{self.peak_bytes / gb:.1f} GB{avail}; {steps} steps need {_duration(steps * self.seconds_per_step)}")
        if max_minutes:
            can = int(60 * max_minutes // max(self.seconds_per_step, 1e-9))
            line += f"; --max-minutes {max_minutes:g} covers about {min(can, steps)} of them"
        return line


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _probe_step(trainer, batch_size: int) -> float:
    """Seconds of one training step of a copy of ``trainer``'s model at ``batch_size``
    (first ``batch_size`` items of the dataset); the trainer's state is not touched."""
    from genimage.families.base import StepContext
    from genimage.training.collate import collate

    import random

    import numpy as np

    dev = trainer.acc.device
    n = len(trainer.dataset)
    np_state, py_state = np.random.get_state(), random.getstate()  # restored below, like torch's
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        model = copy.deepcopy(trainer.model)
        optimizers = model.configure_optimizers(trainer.tc.lr, trainer.tc.weight_decay)
        ctx = trainer._context()
        ctx = dataclasses.replace(ctx, optimizers=optimizers, generator=torch.Generator().manual_seed(0), step=0,
                                  backward=lambda loss: loss.backward())
        batch = collate([trainer.dataset[i % n] for i in range(batch_size)], trainer.conditioner)
        batch["image"] = batch["image"].to(dev)
        if batch["cond"] is not None:
            batch["cond"] = {k: v.to(dev) for k, v in batch["cond"].items()}
        model.train()
        t0 = time.perf_counter()
        model.training_step(batch, ctx)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
    np.random.set_state(np_state)
    random.setstate(py_state)
    del model, optimizers, batch
    return dt


def estimate_training(trainer, batch_sizes: tuple[int, int] | None = None) -> TrainingEstimate:
    """Measure warm-up steps of ``trainer`` (a :class:`~genimage.training.loop.Trainer`) and
    extrapolate to its batch size.

    Args:
        trainer: The trainer; nothing of its state changes.
        batch_sizes: The two probe batches ``(b1, b2)`` (default: an eighth and a quarter of
            the batch size, at least 1 and 2, at most the batch size).
    """
    big = trainer.tc.batch_size
    b1, b2 = batch_sizes or (max(1, big // 8), max(2, big // 4))
    b1, b2 = min(b1, big), min(b2, big)
    _probe_step(trainer, b1)  # warm-up: first-call overheads, allocator pools
    probes = []
    for b in sorted({b1, b2}):
        dt = _probe_step(trainer, b)
        if dt < 0.5:  # cheap steps are noisy: the fastest of three
            dt = min(dt, _probe_step(trainer, b), _probe_step(trainer, b))
        probes.append((b, dt, peak_rss_bytes()))
    (ba, ta, pa), (bb, tb, pb) = probes[0], probes[-1]
    if bb > ba:
        per_s, per_m = max((tb - ta) / (bb - ba), 0.0), max((pb - pa) / (bb - ba), 0.0)
    else:  # one probe: time proportional to the batch, memory slope unknown (0)
        per_s, per_m = tb / bb, 0.0
    seconds = max(tb + per_s * (big - bb), tb)
    peak = int(pb + per_m * (big - bb))
    avail = available_memory_bytes()
    total = None if avail is None else avail + current_rss_bytes()
    return TrainingEstimate(big, seconds, big / seconds, peak, per_m, total, probes)


def check_memory(est: TrainingEstimate, override: bool = False) -> str | None:
    """Raise :class:`GenimageError` if the predicted peak exceeds the available memory (unless
    ``override``), naming the largest batch that fits; returns a warning line when overridden."""
    if est.fits():
        return None
    gb = 1 << 30
    fit = est.largest_batch_that_fits()
    hint = (f"--batch-size {fit} fits" if fit >= 1 else "no batch fits: lower --image-size or use a smaller --preset")
    msg = (f"batch {est.batch_size} needs about {est.peak_bytes / gb:.1f} GB at its peak, more than the "
           f"{est.available_bytes / gb:.1f} GB available; {hint} (pass --ignore-memory to train anyway)")
    if override:
        return f"warning: {msg}"
    raise GenimageError(msg)


class Budget:
    """``--max-minutes``: start a step only if it can end in the budget; keep the final grid's time.

    Args:
        minutes: The budget (0 = none).
        step_seconds: Estimated seconds of a step before any is measured (``None``: unknown,
            the first step always starts).
        grid_factor: Seconds of the final sample grid per second of a training step (see
            :func:`grid_seconds_estimate`); that much time is kept free at the end.
        start: ``time.perf_counter()`` when the budget starts (default: now).
    """

    def __init__(self, minutes: float, step_seconds: float | None = None, grid_factor: float = 0.0,
                 start: float | None = None) -> None:
        self.limit = 60.0 * minutes if minutes else math.inf
        self.start = time.perf_counter() if start is None else start
        self.step_seconds = step_seconds
        self.grid_factor = grid_factor
        self._measured = False

    @property
    def grid_seconds(self) -> float:
        """Estimated seconds of the final grid."""
        return self.grid_factor * (self.step_seconds or 0.0)

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.start)

    def observe(self, seconds: float) -> None:
        """Record a finished step's duration: the budget then plans with the slowest step
        measured (the estimate only stands in until the first one)."""
        self.step_seconds = seconds if not self._measured else max(self.step_seconds, seconds)
        self._measured = True

    def can_start_step(self) -> bool:
        """Whether another step (and then the final grid, where it fits the budget at all) ends in time."""
        if math.isinf(self.limit):
            return True
        grid = self.grid_seconds if self.grid_seconds <= self.limit else 0.0
        return self.left() > 0 and self.left() >= (self.step_seconds or 0.0) + grid

    def can_sample_grid(self) -> bool:
        """Whether the final grid fits in what is left."""
        return math.isinf(self.limit) or self.left() >= self.grid_seconds


def grid_seconds_estimate(step_seconds: float, batch_size: int, images: int, sample_steps: int) -> float:
    """Rough seconds of a sample grid: a forward pass costs about a third of a training step
    (forward + backward ~ 3 forwards), per image, per sampling step, twice with guidance."""
    return step_seconds / max(batch_size, 1) / 3 * images * max(sample_steps, 1) * 2


def estimate_and_check(trainer, steps: int, max_minutes: float, ignore_memory: bool, echo) -> TrainingEstimate | None:
    """What ``genimage train`` does before training: estimate, print, guard memory, hand the
    step time to the trainer's budget. Skipped (``None``) for multi-process runs."""
    if trainer.acc.num_processes > 1:
        return None
    est = estimate_training(trainer)
    echo(est.summary(max(steps - trainer.step, 0), max_minutes))
    warning = check_memory(est, override=ignore_memory)
    if warning:
        echo(warning)
    if max_minutes and est.seconds_per_step > 60 * max_minutes:
        echo(f"warning: a step takes about {est.seconds_per_step:.0f} s, longer than --max-minutes {max_minutes:g}: "
             "no step will start; raise --max-minutes or lower --batch-size / --image-size")
    trainer.step_seconds_hint = est.seconds_per_step
    return est
