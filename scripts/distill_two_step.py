"""Distil a text-conditional flow-matching teacher into a 2-step student from recorded trajectories.

    # 1. record teacher trajectories (noise, the point at t = 0.5, the sample) on train captions
    OMP_NUM_THREADS=1 python scripts/distill_two_step.py record --teacher shapes -n 30000 --out runs/traj.pt
    # 2. train the student on them (starts from the teacher's weights); checkpoints in --out
    OMP_NUM_THREADS=1 python scripts/distill_two_step.py train --teacher shapes --trajectories runs/traj.pt \
        --out runs/shapes_fast --minutes 60
    # 3. make it a model folder
    python scripts/bundle_model.py runs/shapes_fast/final src/genimage/weights/shapes-fast

The student is a 2-segment multistep consistency model (Heek, Hoogeboom & Salimans 2024)
trained by *offline* trajectory distillation (Luhman & Luhman 2021, "Knowledge Distillation
in Iterative Generative Models for Improved Sampling Speed"): the teacher samples with its own
defaults (for ``shapes``: Euler, 8 uniform steps, guidance 3.0 in t in [0.6, 1]) and we keep
three points of each trajectory, the noise ``z`` (t = 1), ``x_mid`` (t = 0.5, after half the
steps) and the sample ``x0``. The student samples with 2 DDIM steps on the segment boundaries
and no guidance. Its first jump ``x_mid_hat = 0.5 x0_hat(z, 1) + 0.5 z`` (DDIM on the linear
path, where ``eps_hat = z`` at t = 1) must land on the teacher's ``x_mid``, so its ``x0`` target
there is ``2 x_mid - z`` (Multistep CM's Alg. 1 inversion); its second jump from the teacher's
``x_mid`` at t = 0.5 regresses onto the teacher's sample. Both are mean squared errors in
``x0`` space. Unlike online consistency distillation, every target is the teacher's *full*
guided solver, so the student's ceiling is the teacher's own 8-step accuracy.

Captions are drawn from the training split only (``sample_captions(split="train")``), so the
held-out prompt pairs of ``genimage eval`` stay unseen by the student too.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

from genimage.errors import GenimageError


def load_teacher_pipe(name: str):
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(name)
    if not pipe.conditioner.uses_text or not pipe.config.latent_shape or pipe.config.path != "linear":
        raise GenimageError(f"{name} is not a text-conditional latent flow-matching model; this script distils those")
    return pipe


def teacher_sampler(pipe):
    """The teacher's default sampler as a guided model and a time grid split at t = 0.5."""
    from genimage.conditioning.cfg import CFGDenoiser
    from genimage.samplers import make_schedule

    o = pipe.options(bf16=False)
    if o.sampler != "euler" or o.steps % 2:
        raise GenimageError(f"the teacher must sample with Euler in an even number of steps (has {o.sampler}, {o.steps})")
    model = CFGDenoiser(pipe.loaded.denoiser, o.guidance, interval=o.guidance_interval)
    times = make_schedule(o.schedule, pipe.loaded.denoiser.path, o.steps)
    half = o.steps // 2
    if abs(float(times[half]) - 0.5) > 1e-9:
        raise GenimageError(f"the teacher's schedule {o.schedule} does not reach t = 0.5 after {half} steps")
    return model, times[: half + 1], times[half:]


@torch.no_grad()
def record(teacher: str, n: int, out: Path, seed: int, batch: int) -> None:
    from genimage.data.shapes import sample_captions
    from genimage.samplers.ode import euler
    from genimage.samplers.noise import generators_for_seeds, randn

    pipe = load_teacher_pipe(teacher)
    model, first, second = teacher_sampler(pipe)
    captions = sample_captions(n, seed=seed, split="train")
    zs, mids, x0s = [], [], []
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        chunk = captions[start:start + batch]
        gens = generators_for_seeds(range(seed * 10_000_000 + start, seed * 10_000_000 + start + len(chunk)))
        z = randn((len(chunk), *pipe.config.latent_shape), gens)
        cond = pipe.conditioner(captions=chunk)
        mid = euler(model, z, first, cond=cond)
        x0 = euler(model, mid, second, cond=cond)
        zs.append(z), mids.append(mid.float()), x0s.append(x0.float())
        done = start + len(chunk)
        if done % (batch * 20) == 0 or done == n:
            el = time.perf_counter() - t0
            print(f"recorded {done}/{n} trajectories in {el:.0f}s ({done / el:.1f}/s)", flush=True)
    data = {"teacher": teacher, "teacher_sha256": pipe.loaded.weights_sha256, "captions": captions,
            "z": torch.cat(zs), "x_mid": torch.cat(mids), "x0": torch.cat(x0s), "seed": seed,
            "seconds": time.perf_counter() - t0}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    print(f"wrote {out}")


def student_config(teacher: str, steps_trained: int, wall: float, lr: float, batch: int, n_traj: int):
    from genimage.families.teacher import student_config_from_teacher

    pipe_cfg = load_teacher_pipe(teacher).config
    fc = {"segments": 2, "intervals": 2, "grid": "uniform", "weighting": "uniform", "mode": "distillation",
          "teacher_guidance": pipe_cfg.guidance, "distillation": "offline-trajectories"}
    cfg = student_config_from_teacher(teacher, "consistency", fc, sampler="ddim", steps=2, guidance=1.0,
                                      guidance_interval=None, schedule="uniform")
    cfg.training.update({"steps": steps_trained, "lr": lr, "batch_size": batch, "wall_time_s": round(wall, 1),
                         "trajectories": n_traj, "images_seen": steps_trained * batch, "bf16": True,
                         "data": "teacher trajectories on builtin:shapes train captions"})
    return cfg


def encode_captions(conditioner, captions: list[str]):
    """Unique captions encoded once: (text, mask) tables and each trajectory's row."""
    unique = sorted(set(captions))
    row = {c: i for i, c in enumerate(unique)}
    texts, masks = [], []
    for s in range(0, len(unique), 256):
        enc = conditioner(captions=unique[s:s + 256])
        texts.append(enc["text"]), masks.append(enc["text_mask"])
    return torch.cat(texts), torch.cat(masks), torch.tensor([row[c] for c in captions])


def load_trajectories(paths: list[Path]) -> dict:
    """One or more recorded files (different seeds) joined into one set; all from the same teacher weights."""
    parts = [torch.load(p, weights_only=False) for p in paths]
    shas = {d["teacher_sha256"] for d in parts}
    if len(shas) != 1:
        raise GenimageError(f"{', '.join(map(str, paths))} were recorded from different teacher weights")
    data = {"teacher_sha256": shas.pop(), "captions": [c for d in parts for c in d["captions"]]}
    for key in ("z", "x_mid", "x0"):
        data[key] = torch.cat([d[key] for d in parts])
    return data


def train(teacher: str, trajectories: list[Path], out: Path, minutes: float, max_steps: int, lr: float, batch: int,
          ema_decay: float, seed: int, save_every: int, init_from: Path | None = None) -> None:
    from genimage.models.io import save_model

    data = load_trajectories(trajectories)
    pipe = load_teacher_pipe(teacher)
    if data["teacher_sha256"] != pipe.loaded.weights_sha256:
        raise GenimageError(f"the trajectories were recorded from other weights than {teacher}'s")
    text, mask, rows = encode_captions(pipe.conditioner, data["captions"])
    z, mid, x0 = data["z"], data["x_mid"], data["x0"]
    n = len(z)
    denoiser = pipe.loaded.denoiser
    network = denoiser.network
    if init_from is not None:  # continue from an earlier student (its EMA weights)
        from genimage.models.io import load_model

        network.load_state_dict(load_model(init_from).denoiser.network.state_dict())
    network.train().requires_grad_(True)
    ema = copy.deepcopy(network).eval().requires_grad_(False)
    opt = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    total = max_steps
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")
    step = 0

    def save(name: str) -> None:
        cfg = student_config(teacher, step, time.perf_counter() - t_start, lr, batch, n)
        save_model(out / name, cfg, {k: v.detach().clone() for k, v in ema.state_dict().items()})

    while step < total and time.perf_counter() - t_start < minutes * 60:
        idx = torch.randint(0, n, (batch,), generator=gen)
        r = rows[idx]
        cond = {"text": torch.cat([text[r], text[r]]), "text_mask": torch.cat([mask[r], mask[r]])}
        x = torch.cat([z[idx], mid[idx]])
        t = torch.cat([torch.ones(batch), torch.full((batch,), 0.5)])
        target = torch.cat([2 * mid[idx] - z[idx], x0[idx]])
        rate = lr * 0.5 * (1 + math.cos(math.pi * step / total))  # cosine decay, no warm-up (starts from the teacher)
        for g in opt.param_groups:
            g["lr"] = rate
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = denoiser(x, t, cond).x0
        err = (pred.float() - target).pow(2).flatten(1).mean(1)
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), network.parameters()):
                pe.lerp_(p, 1 - ema_decay)
        if step % 50 == 0:
            rec = {"step": step, "loss": loss.item(), "loss_t1": err[:batch].mean().item(),
                   "loss_t05": err[batch:].mean().item(), "lr": rate, "s": round(time.perf_counter() - t_start, 1)}
            log.write(json.dumps(rec) + "\n"), log.flush()
            print(json.dumps(rec), flush=True)
        if save_every and step % save_every == 0:
            save(f"step-{step:06d}")
    save("final")
    print(f"trained {step} steps in {time.perf_counter() - t_start:.0f}s; wrote {out / 'final'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record teacher trajectories")
    r.add_argument("--teacher", default="shapes")
    r.add_argument("-n", type=int, default=30000)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--batch", type=int, default=256)
    t = sub.add_parser("train", help="train the 2-step student on recorded trajectories")
    t.add_argument("--teacher", default="shapes")
    t.add_argument("--trajectories", type=Path, nargs="+", required=True, help="one or more recorded files")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--steps", type=int, default=20000, help="length of the cosine schedule (and the step limit)")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=0)
    t.add_argument("--init-from", type=Path, help="start from this student folder instead of the teacher")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "record":
            record(args.teacher, args.n, args.out, args.seed, args.batch)
        else:
            train(args.teacher, args.trajectories, args.out, args.minutes, args.steps, args.lr, args.batch,
                  args.ema_decay, args.seed, args.save_every, args.init_from)
    except GenimageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
