"""Cost of the data-parallel step machinery in one process (genimage.training.distributed).

A step with several processes or micro-batches runs the family's ``training_step`` inside the
``ShardedDraws`` torch-function mode (every torch call made by the step's Python code passes
through it) with deferred optimizers. This measures, on one CPU thread, the median step time of

* ``plain``: the one-process step (``Trainer.train_step`` as without distribution),
* ``sharded K=1``: the same batch through ``sharded_step`` (pure overhead of the mode),
* ``grad-accum K=2``: half the batch twice (what accumulation costs on top),

alternating the three so that machine noise hits them alike. Usage::

    OMP_NUM_THREADS=1 python benchmarks/distributed_overhead.py [--backbone unet] [--preset small] [--size 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="unet")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from genimage.data.tensor import TensorImageDataset
    from genimage.models.config import ModelConfig
    from genimage.models.presets import backbone_config
    from genimage.training import distributed
    from genimage.training.loop import Trainer, TrainConfig

    n, s = 256, args.size
    data = TensorImageDataset(torch.rand(n, 3, s, s) * 2 - 1, torch.arange(n) % 4)
    bc = backbone_config(args.backbone, args.preset, image_size=s, channels=3, num_classes=4)
    mc = ModelConfig(backbone=args.backbone, backbone_config=bc, objective="flow-matching", path="linear",
                     prediction="velocity", image_size=s, channels=3, num_classes=4)
    tmp = tempfile.mkdtemp()
    b = args.batch
    runs = {
        "plain": (Trainer(mc, TrainConfig(batch_size=b, progress=False), data, f"{tmp}/a"), None),
        "sharded K=1": (Trainer(mc, TrainConfig(batch_size=b, progress=False), data, f"{tmp}/b"), "sharded"),
        "grad-accum K=2": (Trainer(mc, TrainConfig(batch_size=b // 2, grad_accum=2, progress=False), data, f"{tmp}/c"),
                           None),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds + 2):
        for name, (trainer, how) in runs.items():
            t0 = time.perf_counter()
            if how == "sharded":
                trainer.model.train()
                distributed.sharded_step(trainer)
                trainer.step += 1
            else:
                trainer.train_step()
            if r >= 2:  # warm-up rounds
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"{args.backbone} {args.preset} {s}px, batch {b}, 1 thread, median of {args.rounds} steps")
    print("| step | ms | ratio to plain |")
    print("|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {1000 * m:.1f} | {m / base:.3f} |")


if __name__ == "__main__":
    main()
