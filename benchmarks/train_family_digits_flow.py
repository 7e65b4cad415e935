"""Train the normalizing-flow family's ``tiny`` preset on digits (class-conditional) for a
fixed wall-clock budget and report held-out bits/dim, speed and sample grids.

    OMP_NUM_THREADS=1 python benchmarks/train_family_digits_flow.py [--minutes 8] [--out runs/flow_digits]

Writes ``samples_t1.0.png`` / ``samples_t0.7.png`` (rows = digits 0..9), ``flow.safetensors``
(EMA weights) and ``results.json`` into ``--out``. Bits/dim are on the ``eval`` split with one
uniform dequantisation draw (base-class convention, :meth:`GenerativeModel.bits_per_dim`).
If :mod:`genimage.metrics.recognizability` exists, also reports its scores on 1000 samples.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=Path("runs/flow_digits"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genimage.data.builtin import load_builtin
    from genimage.data.image_io import save_image_grid
    from genimage.families import FAMILIES
    from genimage.families.base import StepContext
    from genimage.families.normalizing_flow import NormalizingFlowModel  # noqa: F401  (registers)
    from genimage.models.config import ModelConfig
    from genimage.training.ema import EMA
    from genimage.utils.weights import save_safetensors, write_json_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    train, evals = load_builtin("digits", split="train"), load_builtin("digits", split="eval")
    xs = torch.stack([train[i]["image"] for i in range(len(train))])
    ys = torch.tensor([train[i]["label"] for i in range(len(train))])
    xe = torch.stack([evals[i]["image"] for i in range(len(evals))])
    ye = torch.tensor([evals[i]["label"] for i in range(len(evals))])

    spec = FAMILIES.get("normalizing-flow")
    bc = {**spec.presets["tiny"], "image_size": 8, "channels": 1, "num_classes": 10}
    mc = ModelConfig(backbone="normalizing-flow", backbone_config=bc, objective="", path="", prediction="",
                     image_size=8, channels=1, num_classes=10, family="normalizing-flow")
    torch.manual_seed(args.seed)
    model = spec.model_cls(mc)
    n_params = sum(p.numel() for p in model.parameters())
    opts = model.configure_optimizers(args.lr, 0.0)
    gen = torch.Generator().manual_seed(args.seed)
    ema = None
    budget = args.minutes * 60
    log = open(args.out / "log.txt", "w")
    t0, step, seen = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < budget:
        for group in opts["main"].param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        idx = torch.randint(0, len(xs), (args.batch,), generator=gen)
        ctx = StepContext(optimizers=opts, generator=gen, step=step, backward=lambda l: l.backward(),
                          clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0),
                          autocast=contextlib.nullcontext, cond_drop_prob=0.1)
        out = model.training_step({"image": xs[idx], "cond": {"label": ys[idx]}}, ctx)
        if ema is None:  # after the data-dependent ActNorm init, as the trainer's EMA would see it
            ema = EMA(model, 0.999)
        ema.update(model)
        step, seen = step + 1, seen + args.batch
        if step % 100 == 0:
            print(f"step {step} t {time.perf_counter() - t0:.0f}s bpd {out['bpd']:.3f}", file=log, flush=True)
    train_s = time.perf_counter() - t0

    ema_model = copy.deepcopy(model)
    ema_model.load_state_dict(ema.state_dict())
    results: dict = {"steps": step, "train_seconds": round(train_s, 1), "train_images_per_s": round(seen / train_s, 1),
                     "parameters": n_params, "preset": "tiny", "batch": args.batch, "lr": args.lr}
    with torch.no_grad():
        for name, m in (("raw", model), ("ema", ema_model)):
            m.eval()
            g = torch.Generator().manual_seed(1)
            results[f"eval_bpd_{name}"] = round(float(m.bits_per_dim(xe, ye, generator=g).mean()), 4)
            results[f"eval_bpd_uncond_{name}"] = round(float(m.bits_per_dim(xe, None, generator=g).mean()), 4)
            results[f"train_bpd_{name}"] = round(float(m.bits_per_dim(xs[:300], ys[:300], generator=g).mean()), 4)
        best = ema_model
        labels = torch.arange(10).repeat_interleave(10)
        for temp in (1.0, 0.7):
            imgs = best.sample(100, labels, torch.Generator().manual_seed(0), temperature=temp)
            save_image_grid(imgs, args.out / f"samples_t{temp}.png", nrow=10)
        t = time.perf_counter()
        imgs = best.sample(1000, torch.arange(1000) % 10, torch.Generator().manual_seed(2), temperature=0.7)
        results["sample_images_per_s"] = round(1000 / (time.perf_counter() - t), 1)
    save_safetensors(ema_model.state_dict(), args.out / "flow.safetensors")
    if importlib.util.find_spec("genimage.metrics.recognizability") is not None:
        from genimage.metrics import recognizability as rec

        try:
            for temp in (1.0, 0.7):
                labels = torch.arange(1000) % 10
                imgs = best.sample(1000, labels, torch.Generator().manual_seed(3), temperature=temp)
                results[f"recognizability_t{temp}"] = rec.digits_recognizability(imgs, labels)
                imgs = best.sample(1000, None, torch.Generator().manual_seed(4), temperature=temp)
                results[f"recognizability_uncond_t{temp}"] = rec.digits_recognizability(imgs)
        except Exception as exc:  # report, do not lose the other numbers
            results["recognizability_error"] = repr(exc)
    write_json_atomic(results, args.out / "results.json")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
