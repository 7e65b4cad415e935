"""Processes: torchrun's topology, relaunching a command through torchrun, sharing work by rank.

torchrun (``python -m torch.distributed.run``) starts one process per rank and tells each its
place through ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; genimage's commands read them here
(in the CLI, never in the library's numerical code) and split their work by rank.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from genimage.errors import GenimageError


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the variables torchrun sets (``(0, 1, 0)`` outside it)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return int(os.environ.get("RANK", "0") or 0), world, int(os.environ.get("LOCAL_RANK", "0") or 0)


def torchrun_command(nproc: int, command: str, args: Sequence[str], python: str) -> list[str]:
    """The command that runs ``genimage COMMAND ARGS`` in ``nproc`` local processes through
    torchrun (``python -m torch.distributed.run --standalone``).

    Args:
        nproc: Processes on this machine (>= 2).
        command: The genimage command (``train``, ``sample``, ...).
        args: Its arguments, without ``--nproc``.
        python: The interpreter (``sys.executable``).
    """
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "genimage.cli.main", command, *args]


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def relaunch(nproc: int, command: str, argv: Sequence[str]) -> int:
    """Run ``genimage COMMAND`` again in ``nproc`` local processes through torchrun and return
    its exit status. Each process gets ``OMP_NUM_THREADS=1`` unless the variable is set
    (several processes with all cores' threads each oversubscribe a CPU). SIGTERM and SIGINT
    are passed on to torchrun, which passes them to its workers.

    Args:
        nproc: Number of processes (>= 2).
        command: The genimage command name (``train``, ``sample``, ...).
        argv: The command's own arguments as typed (``--nproc`` is removed here).
    """
    import signal
    import subprocess
    import sys

    if nproc < 2:
        raise GenimageError(f"--nproc must be at least 2 to launch processes, got {nproc}")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = torchrun_command(nproc, command, strip_nproc(argv), sys.executable)
    proc = subprocess.Popen(cmd, env=env)
    signalled = []

    def forward(signum, frame):  # let torchrun stop its workers (they checkpoint first)
        signalled.append(signum)
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = proc.wait()
        return 130 if signalled else status  # torchrun itself reports a signal as a failure
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def shard(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank ``rank``'s share ``items[rank::world]`` (seeds, prompts, output paths)."""
    return list(items[rank::world])



def init_process_group() -> tuple[int, int]:
    """Join torchrun's process group (gloo: images travel as CPU tensors) if this is a worker
    of several processes; returns ``(rank, world_size)``."""
    rank, world, _ = env_world()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return rank, world


def finish_process_group() -> None:
    """Wait for every rank, then leave the process group (no-op outside torchrun)."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def gather_sharded(rows: torch.Tensor, total: int, shape: Sequence[int], rank: int, world: int) -> torch.Tensor | None:
    """Reassemble on rank 0 the ``(total, *shape)`` tensor whose row ``i`` rank ``i % world``
    holds as row ``i // world`` of its ``rows`` (the split of :func:`shard`); other ranks get ``None``.

    Args:
        rows: This rank's rows ``(ceil or floor of total / world, *shape)``, float.
        total: Rows over all ranks.
        shape: Shape of one row.
        rank: This process's rank.
        world: Number of processes.
    """
    per = -(-total // world)
    padded = torch.zeros((per, *shape), dtype=torch.float32)
    padded[:rows.shape[0]] = rows.float().cpu()
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
    torch.distributed.gather(padded, parts, dst=0)
    if rank != 0:
        return None
    out = torch.empty((total, *shape), dtype=torch.float32)
    for r, part in enumerate(parts):
        n = len(range(r, total, world))
        out[r::world] = part[:n]
    return out
