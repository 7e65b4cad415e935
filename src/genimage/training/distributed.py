"""Data-parallel training and gradient accumulation that equal one big batch.

A step of a run with ``P`` processes (ranks), ``K`` micro-batches per step (``--grad-accum``)
and ``B`` images per micro-batch trains on one *global batch* of ``G = P * K * B`` images.
It is designed to be the step of a single process with batch ``G``, not merely a step of
the same expected gradient:

* **Data.** The epoch order is shared (one seed); the step takes the next ``G`` indices and
  shard ``j = rank * K + k`` (micro-batch ``k`` of rank ``rank``) holds positions
  ``j*B .. j*B+B-1`` of them.
* **Noise.** Every rank holds the same objective generator. While a family's
  ``training_step`` runs, :class:`ShardedDraws` (a ``TorchFunctionMode``) intercepts each
  draw from that generator: a draw whose first dimension is the micro-batch ``B`` is made
  for the whole global batch (first dimension ``G``, exactly as the one-process run makes
  it) and the shard's rows are returned; other draws (a scalar such as a GAN's mixing
  coin) are made unchanged. Micro-batches ``k > 0`` replay the draws of micro-batch 0, so
  the generator advances once per step, as in one process. Each sample therefore gets its
  own noise (ranks do not repeat each other's) and the families stay unaware.
* **Gradients.** Each micro-batch's loss (a mean over its ``B`` samples) is backpropagated
  scaled by ``1/K``; after the last micro-batch the gradients are summed over ranks
  (one flattened ``all_reduce``) and divided by ``P``; only then does the family clip and
  step (:class:`DeferredOptimizer` turns its ``zero_grad``/``step`` of earlier
  micro-batches into no-ops). The result is the gradient of the mean loss over ``G``
  samples up to float summation order.
* **State.** After every step floating-point buffers (a GAN's ``w_avg``, an autoencoder's
  latent scale) are averaged over ranks and, after a run's first step, parameters are
  broadcast from rank 0 (a normalizing flow's data-dependent ActNorm initialisation sees
  only the local shard), so every rank holds the same model.

Equality holds for losses that are means of per-sample terms whose random draws have the
batch as their first dimension: the diffusion objectives, consistency models with uniform
weighting, reflow and the VAE without free bits (tested against one process to 1e-5).
Batch statistics make the rest approximate: a GAN discriminator's minibatch-stddev groups,
the normalizing flow's ActNorm initialisation, a consistency loss normalised by its mean
weight, VAE free bits, an autoencoder's latent scale;
:meth:`~genimage.families.base.GenerativeModel.grad_accumulation_problem` refuses
``--grad-accum`` where the update itself would differ (GAN, autoencoder, ...). A family
that drew from the training generator a tensor whose first dimension happened to equal ``B``
without being the batch would have it sliced wrongly; every family draws batch-first, and
draws the mode does not know (``Tensor.normal_``, ...) raise instead of passing silently.
Every torch call of the step passes through the mode: about 6,000 calls, ~2% of a UNet step
on one CPU thread (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch.overrides import TorchFunctionMode

from genimage.errors import GenimageError


# ---------------------------------------------------------------------------------------- the noise of a global batch
_SIZED = {"randn", "rand", "randint"}


def _split_size(name: str, args: tuple, kwargs: dict) -> tuple[tuple[int, ...], Any]:
    """The requested output size of a factory draw and a function rebuilding the call with another size."""
    if "size" in kwargs:
        size = tuple(kwargs["size"])
        return size, lambda s: (args, {**kwargs, "size": s})
    if name == "randint":  # randint(high, size) or randint(low, high, size)
        size = tuple(args[-1])
        return size, lambda s: ((*args[:-1], s), kwargs)
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        size = tuple(args[0])
    else:
        size = tuple(int(a) for a in args)
    return size, lambda s: ((s,), kwargs)


class ShardedDraws(TorchFunctionMode):
    """While active, draws from ``generator`` return this shard's rows of the global batch's draw.

    Args:
        generator: The trainer's objective generator (the same state on every rank).
        local_batch: Samples per shard ``B``.
        shards: Shards per step ``P * K``.

    Use :meth:`shard` around each micro-batch's ``training_step``: the step's first
    micro-batch makes and records the draws (``replay=False``), later ones replay them.
    Draws made without a generator (the global RNG) pass through untouched.
    """

    def __init__(self, generator: torch.Generator, local_batch: int, shards: int) -> None:
        super().__init__()
        self.generator, self.b, self.shards = generator, local_batch, shards
        self.records: list[tuple[tuple, torch.Tensor, bool]] = []  # (call key, global draw, batched)
        self._index, self._pos, self._replay = 0, 0, False

    @contextmanager
    def shard(self, index: int, replay: bool) -> Iterator[None]:
        """Draws inside are those of shard ``index``; ``replay`` reuses the recorded draws."""
        if not replay:
            self.records = []
        self._index, self._pos, self._replay = index, 0, replay
        with self:
            yield
        if replay and self._pos != len(self.records):
            raise GenimageError(f"internal: micro-batch drew {self._pos} random tensors, the first drew "
                                f"{len(self.records)}; this family cannot use --grad-accum")

    def _rows(self, full: torch.Tensor) -> torch.Tensor:
        return full[self._index * self.b:(self._index + 1) * self.b].clone()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is not self.generator:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in _SIZED:
            size, rebuild = _split_size(name, args, kwargs)
            key = (name, size)
            batched = len(size) > 0 and size[0] == self.b
            call = rebuild((self.b * self.shards, *size[1:])) if batched else (args, kwargs)
        elif name == "multinomial":
            inp, num = args[0], (args[1] if len(args) > 1 else kwargs["num_samples"])
            key = (name, (tuple(inp.shape), int(num)))
            batched = inp.ndim == 1 and int(num) == self.b
            if batched:
                rest = dict(kwargs)
                rest.pop("num_samples", None)
                call = ((inp, self.b * self.shards, *args[2:]), rest)
            else:
                call = (args, kwargs)
        else:
            raise GenimageError(f"internal: torch.{name} with the training generator is not supported under "
                                "several processes or --grad-accum (use randn, rand, randint or multinomial)")
        if self._replay:
            if self._pos >= len(self.records) or self.records[self._pos][0] != key:
                raise GenimageError(f"internal: micro-batch draws differ from the first one's at {key}; "
                                    "this family cannot use --grad-accum")
            _, full, was_batched = self.records[self._pos]
            self._pos += 1
        else:
            full = func(*call[0], **call[1])  # the mode is off inside its own __torch_function__
            was_batched = batched
            self.records.append((key, full, was_batched))
        return self._rows(full) if was_batched else full.clone()


class DeferredOptimizer:
    """An optimizer whose ``zero_grad`` runs only in the first micro-batch of a step and whose
    ``step`` only in the last, so a family's own update accumulates over micro-batches.

    Args:
        optimizer: The wrapped optimizer (every other attribute is forwarded).
        first: This is the step's first micro-batch.
        last: This is the step's last micro-batch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, first: bool, last: bool) -> None:
        self._opt, self._first, self._last = optimizer, first, last

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self._first:
            self._opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        if self._last:
            return self._opt.step(closure)
        return None

    def __getattr__(self, name: str):
        return getattr(self._opt, name)


def all_reduce_mean_(tensors: Sequence[torch.Tensor], world: int) -> None:
    """Average ``tensors`` (same dtype) over ranks in place with one flattened ``all_reduce``."""
    tensors = [t for t in tensors if t is not None]
    if world <= 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def average_gradients(parameters, world: int) -> None:
    """Data-parallel gradient averaging of the parameters that take gradients now."""
    grads = [p.grad for p in parameters if p.requires_grad and p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        all_reduce_mean_(group, world)


def sync_model_state(model: torch.nn.Module, world: int, parameters: bool) -> None:
    """Average floating-point buffers over ranks; with ``parameters``, also broadcast rank 0's
    parameters (after a data-dependent initialisation on each rank's shard)."""
    if world <= 1:
        return
    with torch.no_grad():
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for b in buffers:
            by_dtype.setdefault(b.dtype, []).append(b)
        for group in by_dtype.values():
            all_reduce_mean_(group, world)
        if parameters:
            for p in model.parameters():
                torch.distributed.broadcast(p.data, src=0)


def any_rank(flag: bool, world: int, device: torch.device | str = "cpu") -> bool:
    """``flag`` OR-ed over ranks (so every rank stops at the same step); ``device`` is where
    the process group communicates (CUDA for NCCL)."""
    if world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_metrics(per_micro: list[dict[str, Any]], world: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Metrics of a step: the mean over micro-batches, then over ranks."""
    keys = list(per_micro[0])
    values = torch.tensor([[float(m[k]) for k in keys] for m in per_micro], dtype=torch.float64).mean(0).to(device)
    if world > 1:
        torch.distributed.all_reduce(values)
        values /= world
    return {k: float(v) for k, v in zip(keys, values.tolist())}


def check_resume_world(saved: dict[str, Any], world: int) -> None:
    """Refuse resuming a checkpoint written by another number of processes (``saved`` is its
    ``trainer.json``): the global batch, and with it the run, would change."""
    old = int(saved.get("world_size", 1))
    if old != world:
        raise GenimageError(f"--resume with {world} process(es); the checkpoint was written by {old} "
                            f"(the global batch would change); use --nproc {old}")


def check_grad_accum(model, grad_accum: int) -> None:
    """Refuse ``--grad-accum`` for a model whose update it would change."""
    if grad_accum > 1:
        problem = model.grad_accumulation_problem()
        if problem:
            raise GenimageError(f"--grad-accum {grad_accum} with --family {model.family}: {problem}")


def sharded_step(trainer) -> dict[str, float]:
    """One optimizer step of ``trainer`` over ``P`` processes and ``K = grad_accum`` micro-batches
    that equals a one-process step on the global batch (see the module docstring).

    Args:
        trainer: The :class:`~genimage.training.loop.Trainer` (its order, generator, model,
            ``_batch_from`` and ``_context``).

    Returns:
        The step's metrics, averaged over micro-batches and ranks.
    """
    world, rank = trainer.acc.num_processes, trainer.acc.process_index
    k_total, b = trainer.tc.grad_accum, trainer.tc.batch_size
    indices = trainer.order.take(b * world * k_total)
    draws = ShardedDraws(trainer.generator, b, world * k_total)
    base = trainer._context()
    params = list(trainer.model.parameters())
    metrics = []
    for k in range(k_total):
        first, last, j = k == 0, k == k_total - 1, rank * k_total + k
        batch = trainer._batch_from(indices[j * b:(j + 1) * b])

        def backward(loss: torch.Tensor, last: bool = last) -> None:
            base.backward(loss / k_total if k_total > 1 else loss)
            if last:
                average_gradients(params, world)

        def clip(parameters, last: bool = last) -> None:
            if last:
                base.clip(parameters)

        ctx = dataclasses.replace(base, backward=backward, clip=clip,
                                  optimizers={n: DeferredOptimizer(o, first, last) for n, o in base.optimizers.items()})
        with draws.shard(j, replay=k > 0):
            metrics.append(trainer.model.training_step(batch, ctx))
    sync_model_state(trainer.model, world, parameters=trainer.step == 0)
    return mean_metrics(metrics, world, trainer.acc.device)
