"""``--nproc N``: run a command in ``N`` local processes through torchrun.

``genimage train|sample|generate|eval ... --nproc N`` starts
``python -m torch.distributed.run --standalone --nproc_per_node N -m genimage.cli.main
COMMAND ...`` with the same arguments (minus ``--nproc``); each worker then sees torchrun's
``RANK`` / ``WORLD_SIZE`` and does its share. Launching torchrun by hand (for several
machines: ``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``) runs the same workers.
"""

from __future__ import annotations

import sys

from genimage.errors import GenimageError


def maybe_relaunch(command: str, nproc: int) -> int | None:
    """Relaunch ``command`` through torchrun when ``nproc > 1`` and this is not a torchrun
    worker yet; return torchrun's exit status, or ``None`` when this process should do the
    work itself (``nproc == 1``, or already a worker of a matching world)."""
    from genimage.utils.distributed import env_world, relaunch

    if nproc < 1:
        raise GenimageError(f"--nproc must be at least 1, got {nproc}")
    _, world, _ = env_world()
    if world > 1:
        if nproc not in (1, world):
            raise GenimageError(f"--nproc {nproc} inside a torchrun world of {world} processes; drop --nproc")
        return None
    if nproc == 1:
        return None
    argv = sys.argv[1:]
    if not argv or argv[0] != command:
        raise GenimageError(f"--nproc relaunches the command line `genimage {command} ...`; from Python, "
                            f"start torchrun yourself")
    return relaunch(nproc, command, argv[1:])


def worker_device(device: str) -> str:
    """``--device auto`` in a torchrun worker on a CUDA machine: this worker's GPU ``cuda:LOCAL_RANK``."""
    from genimage.utils.distributed import env_world

    _, world, local_rank = env_world()
    if device == "auto" and world > 1:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device
