"""Train the ``vae`` family on the built-in digits for a fixed wall-clock budget and report
ELBO bits/dim on the held-out split, training images/s and a sample grid.

The loop is the generic one (AdamW, linear lr warm-up, grad-norm clip 1.0, EMA 0.999 of the
weights, :meth:`~genimage.families.base.GenerativeModel.training_step`), stopped by time
rather than by step count. Evaluation uses the EMA weights:

* ``bpd``: ``-ELBO / (D ln 2)`` on the digits ``eval`` split (297 images), one posterior
  sample per image (an unbiased estimate of the ELBO bound), and the tighter importance
  weighted bound with ``--iw`` samples;
* samples: decoder means of prior draws, saved as PNG grids (class-conditional rows
  ``0..9`` when trained with labels, plus an unconditional grid);
* if :mod:`genimage.metrics.recognizability` exists, its scores on 1000 samples.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/train_family_digits_vae.py --minutes 8 --out /tmp/vae_digits \
        [--preset tiny] [--set latent_dim=16] [--unconditional]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import torch

from genimage.data.builtin import load_builtin
from genimage.data.image_io import save_image_grid
from genimage.families import FAMILIES, load_all_families
from genimage.families.base import StepContext
from genimage.models.config import ModelConfig
from genimage.training.ema import EMA
from genimage.utils.weights import save_safetensors, write_json_atomic


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def stack(ds) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps instead (0 = use --minutes)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="backbone_config override KEY=VALUE")
    ap.add_argument("--unconditional", action="store_true", help="train without labels")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iw", type=int, default=100, help="importance samples for the IWAE bound (0 = skip)")
    ap.add_argument("--out", default="/tmp/vae_digits")
    ap.add_argument("--classifier", default="/tmp/feats/digits",
                    help="digits classifier folder used when the shipped one is not installed")
    args = ap.parse_args()

    load_all_families()
    spec = FAMILIES.get("vae")
    defaults = spec.train_defaults
    batch_size = args.batch_size or defaults.get("batch_size", 128)
    lr = args.lr or defaults.get("lr", 1e-3)
    warmup = defaults.get("warmup_steps", 100)
    ema_decay = defaults.get("ema_decay", 0.999)
    num_classes = 0 if args.unconditional else 10

    bc = dict(spec.presets[args.preset], image_size=8, channels=1, num_classes=num_classes)
    for item in args.set:
        key, _, value = item.partition("=")
        bc[key] = parse_value(value)
    mc = ModelConfig(backbone="conv-vae", backbone_config=bc, objective="", path="", prediction="",
                     image_size=8, channels=1, num_classes=num_classes,
                     class_names=[str(i) for i in range(10)] if num_classes else None, family="vae")
    torch.manual_seed(args.seed)
    model = spec.model_cls(mc)
    dev = torch.device(args.device)
    model.to(dev)
    opts = model.configure_optimizers(lr, 0.0)
    ema = EMA(model.ema_module(), ema_decay)
    gen = torch.Generator().manual_seed(args.seed + 1)
    train_x, train_y = (t.to(dev) for t in stack(load_builtin("digits", split="train")))
    eval_x, eval_y = (t.to(dev) for t in stack(load_builtin("digits", split="eval")))
    n_params = sum(p.numel() for p in model.parameters())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("w")
    print(f"vae/{args.preset} {n_params} parameters, batch {batch_size}, lr {lr}, budget {args.minutes} min",
          flush=True)

    budget = args.minutes * 60.0
    step, seen, t_train = 0, 0, 0.0
    perm, pos = torch.randperm(len(train_x), generator=gen), 0
    window: list[dict] = []
    model.train()
    while (step < args.steps) if args.steps else (t_train < budget):
        t0 = time.perf_counter()
        if pos + batch_size > len(perm):
            perm, pos = torch.randperm(len(train_x), generator=gen), 0
        idx = perm[pos:pos + batch_size].to(dev)
        pos += batch_size
        batch = {"image": train_x[idx], "cond": {"label": train_y[idx]} if num_classes else None}
        cur_lr = lr * min(1.0, (step + 1) / warmup)
        for opt in opts.values():
            for g in opt.param_groups:
                g["lr"] = cur_lr
        ctx = StepContext(optimizers=opts, generator=gen, step=step, backward=lambda loss: loss.backward(),
                          clip=lambda p: torch.nn.utils.clip_grad_norm_(p, 1.0), autocast=contextlib.nullcontext,
                          cond_drop_prob=0.1)
        metrics = model.training_step(batch, ctx)
        if not math.isfinite(metrics["loss"]):
            raise SystemExit(f"loss became {metrics['loss']} at step {step}")
        ema.update(model.ema_module())
        step += 1
        seen += batch_size
        t_train += time.perf_counter() - t0
        window.append(metrics)
        if step % 50 == 0:
            rec = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
            rec.update(step=step, train_s=round(t_train, 1), images_per_s=round(seen / t_train, 1))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            window = []

    # ------------------------------------------------------------------ evaluation (EMA weights)
    model.ema_module().load_state_dict(ema.state_dict())
    model.eval()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    results: dict = {"preset": args.preset, "backbone_config": bc, "parameters": n_params, "steps": step,
                     "batch_size": batch_size, "lr": lr, "train_seconds": round(t_train, 1),
                     "images_per_s": round(seen / t_train, 1), "conditional": bool(num_classes)}
    g = torch.Generator(dev).manual_seed(1234)
    with torch.no_grad():
        cond = eval_y if num_classes else None
        results["eval_bpd_elbo"] = float((-(model.elbo(eval_x, cond, generator=g)) / (64 * math.log(2))).mean())
        results["eval_bpd_via_bits_per_dim"] = float(model.bits_per_dim(eval_x, cond).mean())
        results["train_bpd_elbo"] = float((-(model.elbo(train_x[:297], train_y[:297] if num_classes else None,
                                                        generator=g)) / (64 * math.log(2))).mean())
        if args.iw:
            results[f"eval_bpd_iwae{args.iw}"] = float(
                (-(model.elbo(eval_x, cond, k=args.iw, generator=g)) / (64 * math.log(2))).mean())
        if num_classes:
            results["eval_bpd_elbo_label_dropped"] = float(
                (-(model.elbo(eval_x, torch.full_like(eval_y, -1), generator=g)) / (64 * math.log(2))).mean())
        gens = [torch.Generator(dev).manual_seed(i) for i in range(1000)]
        labels = torch.arange(1000) % 10
        samples_c = model.sample(1000, labels, gens) if num_classes else None
        samples_u = model.sample(1000, torch.full((1000,), -1) if num_classes else None, gens)
        samples_u, samples_c = samples_u.cpu(), samples_c.cpu() if samples_c is not None else None
        eval_x, eval_y = eval_x.cpu(), eval_y.cpu()
        model.cpu()
    if samples_c is not None:
        order = torch.arange(100).view(10, 10).t().reshape(-1)  # row r = digit r
        save_grid(samples_c[:100][order], out / "samples_conditional.png", nrow=10)
    save_grid(samples_u[:100], out / "samples_unconditional.png", nrow=10)
    save_grid(eval_x[:50], out / "eval_real.png", nrow=10)
    with torch.no_grad():
        mean, _ = model.encode(eval_x[:50], eval_y[:50] if num_classes else None)
        recon = model.decode(mean, eval_y[:50] if num_classes else None)
    save_grid(torch.cat([eval_x[:50], recon]), out / "eval_reconstructions.png", nrow=10)
    net = digits_classifier(args.classifier)
    if net is not None:
        from genimage.metrics.recognizability import digits_recognizability

        if samples_c is not None:
            results["recognizability_conditional"] = digits_recognizability(samples_c, labels, net=net)
        results["recognizability_unconditional"] = digits_recognizability(samples_u, net=net)
    save_safetensors(model.ema_module().state_dict(), out / "model.safetensors")
    save_safetensors({"unconditional": samples_u, **({"conditional": samples_c} if samples_c is not None else {})},
                     out / "samples.safetensors")
    mc.training = {"steps": step, "batch_size": batch_size, "wall_time_s": round(t_train, 1), "lr": lr,
                   "ema_decay": ema_decay, "seed": args.seed}
    mc.save(out)
    write_json_atomic(results, out / "results.json")
    print(json.dumps(results, indent=1), flush=True)


def digits_classifier(folder: str):
    """The digits classifier of :mod:`genimage.metrics.recognizability` (the shipped one, else
    ``folder``), or ``None`` when neither is available."""
    try:
        from genimage.metrics.features import available_feature_nets, load_feature_net
        import genimage.metrics.recognizability  # noqa: F401
    except ModuleNotFoundError:
        return None
    if "digits" in available_feature_nets():
        return load_feature_net("digits")
    if folder and (Path(folder) / "config.json").is_file():
        return load_feature_net(folder)
    return None


def save_grid(images: torch.Tensor, path: Path, nrow: int, zoom: int = 4) -> None:
    """Save a grid, and a ``zoom``-times enlarged copy (``*_x4.png``) for viewing 8 px digits."""
    save_image_grid(images, path, nrow=nrow)
    big = torch.nn.functional.interpolate(images, scale_factor=zoom, mode="nearest")
    save_image_grid(big, path.with_name(path.stem + f"_x{zoom}.png"), nrow=nrow, padding=2 * zoom)


if __name__ == "__main__":
    main()
