"""Where a training step's time goes, for the bundled shapes architecture (CPU or CUDA).

    python benchmarks/train_step_profile.py [--batch-sizes 512,2048] [--steps 30] [--model shapes]

Builds the trainer of ``--model``'s architecture (default: the bundled shapes latent UNet)
on random latents with random caption states (no autoencoder or text encoder is loaded), and
times, per step and median over ``--steps`` steps after 5 warm-up steps: fetching and
collating the batch, the family's training step (forward, backward, clip, optimizer), and the
EMA update, synchronising the device between the parts. Small models on a GPU are bound by
this host-side work rather than by the GPU; the table shows how much each part costs.
``--profile`` adds torch.profiler's top operators by self CPU time; ``--compile`` adds a row
per batch size with the network compiled in place (``genimage train --compile``), timed in
the same process after the eager row, and prints the compile time. Rows are timed with the
trainer's default deterministic CUDA kernels; ``--nondeterministic-too`` adds a row per batch
size with them switched off (``genimage train --nondeterministic``), timed right after.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(model: str, batch: int, prompts: int = 64, items: int = 8192, seed: int = 0):
    """A Trainer for ``model``'s architecture on random latents and random caption states."""
    from genimage.latent.dataset import LatentDataset
    from genimage.latent.text_cache import CachedTextEncoder
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder
    from genimage.training.loop import Trainer, TrainConfig

    mc = ModelConfig.load(resolve_model_folder(model))
    g = torch.Generator().manual_seed(seed)
    c, h, w = mc.latent_shape or (mc.channels, mc.image_size, mc.image_size)
    captions = None
    table = None
    if mc.text_encoder:
        bc = mc.backbone_config
        length, dim = mc.text_max_length, bc["text_dim"]
        mask = torch.zeros(prompts, length, dtype=torch.bool)
        for i in range(prompts):
            mask[i, : 4 + i % (length - 4)] = True
        names = [f"prompt {i}" for i in range(prompts)]
        table = CachedTextEncoder(names, torch.randn(int(mask.sum()), dim, generator=g), mask,
                                  torch.randn(prompts, dim, generator=g), name=mc.text_encoder, weights_sha256="0" * 64)
        captions = [names[i % prompts] for i in range(items)]
    labels = [i % mc.num_classes for i in range(items)] if mc.num_classes else None
    data = LatentDataset(torch.randn(items, c, h, w, generator=g), labels, captions, num_classes=mc.num_classes or None,
                         source_image_size=mc.image_size, source_channels=mc.channels)
    tc = TrainConfig(steps=10**6, batch_size=batch, lr=1e-4, warmup_steps=0, checkpoint_every=0, progress=False)
    trainer = Trainer(mc, tc, data, tempfile.mkdtemp(prefix="step_profile_"))
    if table is not None:
        trainer.conditioner._text_encoder = table
    return trainer


def time_parts(trainer, steps: int) -> dict[str, float]:
    """Median milliseconds of each part of :meth:`Trainer.train_step` over ``steps`` steps."""
    dev = trainer.acc.device
    parts: dict[str, list[float]] = {"batch": [], "training_step": [], "ema": [], "total": []}
    for i in range(steps + 5):
        _sync(dev)
        t0 = time.perf_counter()
        batch = trainer._next_batch()
        _sync(dev)
        t1 = time.perf_counter()
        trainer.model.train()
        metrics = trainer.model.training_step(batch, trainer._context())
        float(metrics["loss"])
        _sync(dev)
        t2 = time.perf_counter()
        trainer.ema.update(trainer.model.ema_module())
        trainer.step += 1
        _sync(dev)
        t3 = time.perf_counter()
        if i >= 5:
            for k, v in (("batch", t1 - t0), ("training_step", t2 - t1), ("ema", t3 - t2), ("total", t3 - t0)):
                parts[k].append(v * 1e3)
    return {k: statistics.median(v) for k, v in parts.items() if v}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--batch-sizes", default="512,2048")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time the step with the network compiled")
    ap.add_argument("--nondeterministic-too", action="store_true",
                    help="also time the step with deterministic CUDA kernels off")
    args = ap.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    print("| batch | batch fetch + collate ms | training step ms | EMA ms | total ms | images/s |")
    print("|---|---|---|---|---|---|")
    for b in (int(v) for v in args.batch_sizes.split(",")):
        trainer = build(args.model, b)
        t = time_parts(trainer, args.steps)
        print(f"| {b} | {t['batch']:.1f} | {t['training_step']:.1f} | {t['ema']:.1f} | {t['total']:.1f} | "
              f"{b / t['total'] * 1e3:,.0f} |", flush=True)
        if args.nondeterministic_too:
            from genimage.training.loop import use_deterministic_cuda

            use_deterministic_cuda(False)
            t = time_parts(trainer, args.steps)
            print(f"| {b}, nondeterministic | {t['batch']:.1f} | {t['training_step']:.1f} | {t['ema']:.1f} | "
                  f"{t['total']:.1f} | {b / t['total'] * 1e3:,.0f} |", flush=True)
            use_deterministic_cuda(True)
        if args.compile:
            t0 = time.perf_counter()
            trainer.model.ema_module().compile()
            time_parts(trainer, 0)  # the first steps compile forward and backward
            seconds = time.perf_counter() - t0
            t = time_parts(trainer, args.steps)
            print(f"| {b}, compiled ({seconds:.0f} s to compile) | {t['batch']:.1f} | {t['training_step']:.1f} | "
                  f"{t['ema']:.1f} | {t['total']:.1f} | {b / t['total'] * 1e3:,.0f} |", flush=True)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
            with profile(activities=acts) as prof:
                time_parts(trainer, 5)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
