"""GPU check and shapes scaling measurement, for a lent CUDA machine (one short run).

Part 1 (CUDA path): the generic trainer on ``digits`` with bf16 autocast: train, checkpoint,
resume, sample; per-seed determinism of generation on the GPU (a batch of 8 vs 8 singles).

Part 2 (how far updates take the shapes architecture): the bundled ``shapes`` model's exact
architecture and objective (DiT hidden 128, depth 6, 4 heads, patch 4, MiniLM tokens,
flow matching), trained on CUDA with bf16 for a time budget; prompt accuracy
(``evaluate_prompts``, default sampling) at time marks. The EMA weights come back in
``$OUT/shapes_gpu`` for a full CPU evaluation.

    python benchmarks/gpu_check.py --text-encoder PATH --out $OUT --budget 270

``PATH`` is the all-MiniLM-L6-v2 folder (the package copy, or an fp16 copy to travel light).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from multiprocessing import get_context
from pathlib import Path

import torch

from genimage.data.builtin import load_builtin
from genimage.data.tensor import TensorImageDataset
from genimage.models.config import ModelConfig
from genimage.models.io import save_model
from genimage.training.loop import Trainer, TrainConfig


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def log(*a) -> None:
    print(*a, flush=True)


def part1(out: Path) -> dict:
    from genimage.families.diffusion import DiffusionModel
    from genimage.models.presets import backbone_config
    from genimage.samplers.noise import generators_for_seeds

    ds = load_builtin("digits")
    bcfg = backbone_config("dit", "tiny", image_size=8, channels=1, num_classes=10, text_dim=0, max_text_len=1)
    mc = ModelConfig(backbone="dit", backbone_config=bcfg, objective="flow-matching", path="linear",
                     prediction="velocity", image_size=8, channels=1, num_classes=10)
    run = Path(tempfile.mkdtemp()) / "digits_run"
    t0 = time.time()
    tc = TrainConfig(steps=100, batch_size=64, bf16=True, checkpoint_every=50, progress=False, lr=1e-3)
    Trainer(mc, tc, ds, run).train()
    resumed = Trainer(mc, TrainConfig(**{**tc.__dict__, "steps": 120}), ds, run, resume=True)
    assert resumed.step == 100, resumed.step
    hist = resumed.train()
    model = resumed.sampling_model()
    assert next(model.parameters()).device.type == DEVICE
    with torch.no_grad():
        batch = model.sample(8, list(range(8)), generators_for_seeds(range(8)))
        singles = torch.cat([model.sample(1, [i], generators_for_seeds([i])) for i in range(8)])
    res = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "train_s": round(time.time() - t0, 1),
           "final_loss": hist[-1], "finite": bool(torch.isfinite(batch).all()),
           "batch_vs_single_max_abs_diff": float((batch - singles).abs().max()),
           "shape": list(batch.shape), "is_diffusion": isinstance(model, DiffusionModel)}
    log("part1", json.dumps(res))
    return res


def _worker_init() -> None:
    torch.set_num_threads(1)  # 16 workers x all-core OpenMP pools oversubscribe the CPU


def _render(args):
    start, stop, length = args
    ds = load_builtin("shapes", length=length)
    imgs, caps = [], []
    for i in range(start, stop):
        it = ds[i]
        imgs.append(((it["image"] + 1) * 127.5).round().to(torch.uint8))
        caps.append(it["caption"])
    return torch.stack(imgs), caps


def render_shapes(n: int, workers: int = 16) -> TensorImageDataset:
    chunks = [(s, min(s + 5000, n), n) for s in range(0, n, 5000)]
    # spawn, not fork: a forked child of a process whose OpenMP pool is live can deadlock
    # (the first device run printed nothing in 240 s here)
    with get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        parts = []
        for i, part in enumerate(pool.imap(_render, chunks)):
            parts.append(part)
            log(f"rendered chunk {i + 1}/{len(chunks)}")
    images = torch.cat([p[0] for p in parts]).float() / 127.5 - 1
    captions = [c for p in parts for c in p[1]]
    return TensorImageDataset(images, captions=captions)


def evaluate(trainer: Trainer, n: int, folder: Path) -> dict:
    from genimage.metrics.prompt_accuracy import evaluate_prompts
    from genimage.pipeline import Pipeline

    mc = trainer.model_config_snapshot()
    save_model(folder, mc, {k: v.cpu() for k, v in trainer.ema.state_dict().items()})
    pipe = Pipeline.from_pretrained(folder)
    pipe.loaded.denoiser.to(DEVICE)
    pipe.conditioner._text_encoder = trainer.conditioner.text_encoder  # reuse the warm cache
    return evaluate_prompts(pipe, n=n, seed=0, batch_size=256)


def part2(out: Path, text_encoder: str, budget: float, batch: int, lr: float, marks: list[float],
          n_eval: int, n_data: int) -> dict:
    from genimage.models.presets import backbone_config

    t0 = time.time()
    ds = render_shapes(n_data)
    log(f"rendered {len(ds)} shapes images in {time.time() - t0:.1f}s")
    bcfg = backbone_config("dit", "small", image_size=32, channels=3, num_classes=0, text_dim=384, max_text_len=16,
                           overrides={"hidden": 128, "heads": 4, "depth": 6})
    mc = ModelConfig(backbone="dit", backbone_config=bcfg, objective="flow-matching", path="linear",
                     prediction="velocity", image_size=32, channels=3, text_encoder=text_encoder, text_max_length=16,
                     sampler="euler", steps=16, guidance=3.0, training={"data": "builtin:shapes (pre-rendered)"})
    tc = TrainConfig(steps=10**9, batch_size=batch, lr=lr, warmup_steps=500, ema_decay=0.9995, bf16=True,
                     progress=False, checkpoint_every=0)
    run = Path(tempfile.mkdtemp())
    trainer = Trainer(mc, tc, ds, run)
    log(f"parameters {trainer.parameter_count():,}")
    trainer.conditioner.text_encoder.to(DEVICE)
    te = time.time()
    trainer.conditioner.text_encoder.encode(sorted(set(ds.captions)) + [""])  # warm the per-caption cache
    log(f"encoded {len(set(ds.captions))} unique captions in {time.time() - te:.1f}s")
    results = []
    t_train = 0.0
    pending = sorted(marks)
    losses = []
    while pending:
        ts = time.time()
        losses.append(trainer.train_step())
        t_train += time.time() - ts
        if trainer.step % 500 == 0:
            log(f"step {trainer.step} train_s {t_train:.0f} loss {sum(losses[-500:]) / len(losses[-500:]):.4f}")
        if t_train >= pending[0]:
            pending.pop(0)
            te = time.time()
            acc = evaluate(trainer, n_eval, out / "shapes_gpu")
            row = {"train_s": round(t_train, 1), "step": trainer.step, "images": trainer.step * batch,
                   "seen": acc["seen"], "held_out": acc["held_out"], "eval_s": round(time.time() - te, 1)}
            results.append(row)
            log("mark", json.dumps(row))
            (out / "marks.json").write_text(json.dumps(results, indent=2))
    return {"batch": batch, "lr": lr, "images_per_s": trainer.step * batch / t_train, "marks": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--text-encoder", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=270)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--n-data", type=int, default=400_000)
    ap.add_argument("--skip-part1", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    parts = [] if args.skip_part1 else [("part1", lambda: part1(out))]
    for name, fn in (*parts,
                     ("part2", lambda: part2(out, args.text_encoder, args.budget, args.batch, args.lr,
                                             [args.budget * f for f in (0.2, 0.5, 1.0)], args.n_eval, args.n_data))):
        try:
            report[name] = fn()
        except Exception:
            traceback.print_exc()
            report[name] = {"error": traceback.format_exc()[-2000:]}
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
