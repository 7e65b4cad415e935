"""Train the ``gan`` family's preset on 8x8 digits (class-conditional) for a wall-clock budget.

Calls :meth:`GANModel.training_step` directly (no generic trainer), keeps an EMA of the
generator (decay from the family's ``train_defaults``), and writes to ``--out``:

* ``generator_ema.safetensors`` (EMA generator weights = ``model.safetensors`` of a model folder),
  ``config.json`` (the ModelConfig), ``metrics.jsonl`` (every ``--log-every`` steps),
* ``samples.png`` (10 x 10 grid, row = class, EMA weights) and ``summary.json``.

Scores 1000 class-conditional samples with the digits classifier of
:mod:`genimage.metrics.recognizability` when one is installed (or ``--classifier FOLDER``),
else with a scikit-learn SVC trained on the digits train split (a weaker proxy: no outlier
exposure, so blurry blobs may still look confident). ``--eval-only`` re-scores a saved run.

Run (background):  OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/train_family_digits_gan.py \
    --minutes 8 --out /tmp/gan_digits > /tmp/gan_digits.log 2>&1 &
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
from genimage.families import FAMILIES
from genimage.families.base import StepContext
from genimage.families.gan import GANModel, within_class_distance, gan_health
from genimage.models.config import ModelConfig
from genimage.training.ema import EMA
from genimage.utils.weights import load_safetensors, save_safetensors, write_json_atomic


def digits_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_builtin("digits", split=split)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    y = torch.tensor([int(ds[i]["label"]) for i in range(len(ds))])
    return x, y


def make_scorer(classifier: str | None):
    """``score(images, labels) -> dict`` with the genimage digits classifier or an SVC proxy."""
    try:
        from genimage.metrics.features import load_feature_net
        from genimage.metrics.recognizability import digits_recognizability

        net = load_feature_net(classifier or "digits")

        def score(images, labels):
            out = digits_recognizability(images, labels, net=net)
            out["classifier"] = str(out["classifier"])
            return out

        return score, (lambda x: net.classify(x)), f"genimage digits classifier ({classifier or 'digits'})"
    except Exception as exc:  # noqa: BLE001 - fall back to a proxy when none is installed
        print(f"digits classifier unavailable ({exc}); using an SVC proxy", flush=True)
    from sklearn.svm import SVC

    x, y = digits_tensors("train")
    svc = SVC(probability=True, random_state=0).fit(x.reshape(len(x), -1).numpy(), y.numpy())

    def classify(images):
        return torch.from_numpy(svc.predict_proba(images.reshape(len(images), -1).numpy())).float()

    def score(images, labels):
        probs = classify(images)
        conf, pred = probs.max(1)
        confident = conf >= 0.9
        counts = torch.bincount(pred[confident], minlength=10)
        return {"n": len(images), "confident_fraction": float(confident.float().mean()),
                "classes_present": int((counts > 0).sum()), "mean_confidence": float(conf.mean()),
                "accuracy_vs_labels": float((pred == torch.as_tensor(labels)).float().mean()),
                "classifier": "sklearn SVC proxy"}

    return score, classify, "sklearn SVC proxy"


def evaluate(model: GANModel, score, classify, reals: torch.Tensor, real_labels: torch.Tensor, out: Path,
             psi: float = 1.0) -> dict:
    labels = torch.arange(1000) % 10
    gens = [torch.Generator().manual_seed(10_000 + i) for i in range(1000)]
    model.eval()
    samples = model.sample(1000, cond=labels, generator=gens, psi=psi)
    res = score(samples, labels)
    res["health"] = gan_health([], samples, reals, classify=classify, labels=labels, real_labels=real_labels)
    res["within_class_diversity"] = within_class_distance(samples, labels)
    res["real_within_class_diversity"] = within_class_distance(reals, real_labels)
    grid = model.sample(100, cond=torch.arange(100) // 10, generator=torch.Generator().manual_seed(0), psi=psi)
    save_image_grid(grid, out / ("samples.png" if psi == 1.0 else f"samples_psi{psi}.png"), nrow=10)
    return res


def build(preset: str, overrides: dict) -> GANModel:
    spec = FAMILIES.get("gan")
    bc = {**spec.presets[preset], **overrides, "image_size": 8, "channels": 1, "num_classes": 10}
    mc = ModelConfig(backbone="stylegan2", backbone_config=bc, objective="", path="", prediction="",
                     image_size=8, channels=1, num_classes=10, class_names=[str(d) for d in range(10)], family="gan")
    return GANModel(mc)


def main() -> None:
    spec = FAMILIES.get("gan")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget incl. scoring")
    ap.add_argument("--out", default="/tmp/gan_digits")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--override", default="{}", help="JSON dict of preset overrides")
    ap.add_argument("--lr", type=float, default=spec.train_defaults["lr"])
    ap.add_argument("--batch-size", type=int, default=spec.train_defaults["batch_size"])
    ap.add_argument("--ema-decay", type=float, default=spec.train_defaults["ema_decay"])
    ap.add_argument("--cond-drop", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every-min", type=float, default=2.0, help="save + score every N minutes")
    ap.add_argument("--classifier", default=None, help="digits feature-net folder (default: shipped 'digits')")
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = build(args.preset, json.loads(args.override))
    reals, real_labels = digits_tensors("train")
    score, classify, clf_name = make_scorer(args.classifier)
    if args.eval_only:
        model.load_sampling_state(load_safetensors(out / "generator_ema.safetensors"))
        for psi in (1.0, 0.7):
            print(f"psi={psi}", json.dumps(evaluate(model, score, classify, reals, real_labels, out, psi)), flush=True)
        return

    model.config.save(out)
    opts = model.configure_optimizers(args.lr, 0.0)
    ema = EMA(model.ema_module(), args.ema_decay)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(reals)
    g_params = sum(p.numel() for p in model.generator.parameters())
    d_params = sum(p.numel() for p in model.discriminator.parameters())
    print(f"G {g_params} params, D {d_params} params, num_ws {model.num_ws}, classifier: {clf_name}", flush=True)
    history, perm, pos, step = [], torch.randperm(n, generator=gen), 0, 0
    start = last_eval = time.time()
    budget = args.minutes * 60
    evals = []
    metrics_file = (out / "metrics.jsonl").open("w")

    def save_and_score() -> None:
        ema_model = build(args.preset, json.loads(args.override))
        ema_model.load_sampling_state(ema.state_dict())
        save_safetensors({k: v.contiguous() for k, v in ema.state_dict().items()}, out / "generator_ema.safetensors")
        t_eval = time.time()
        res = evaluate(ema_model, score, classify, reals, real_labels, out)
        res.update(step=step, minutes=(time.time() - start) / 60, eval_seconds=time.time() - t_eval)
        evals.append(res)
        print("EVAL", json.dumps({k: v for k, v in res.items() if k != "class_counts"}), flush=True)

    train_time = 0.0
    while time.time() - start < budget - 30:  # wall clock, 30 s left for the final scoring
        if pos + args.batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + args.batch_size]
        pos += args.batch_size
        batch = {"image": reals[idx], "cond": {"label": real_labels[idx]}}
        ctx = StepContext(optimizers=opts, generator=gen, step=step, backward=lambda loss: loss.backward(),
                          clip=lambda p: None, autocast=contextlib.nullcontext, cond_drop_prob=args.cond_drop)
        t0 = time.time()
        model.train()
        m = model.training_step(batch, ctx)
        ema.update(model.ema_module())
        train_time += time.time() - t0
        step += 1
        history.append(m)
        if step % args.log_every == 0:
            rec = {"step": step, "train_s": round(train_time, 1),
                   "img_per_s": round(step * args.batch_size / train_time, 1),
                   **{k: round(v, 4) for k, v in m.items()}}
            metrics_file.write(json.dumps(rec) + "\n")
            metrics_file.flush()
            print(json.dumps(rec), flush=True)
        if not all(math.isfinite(v) for v in m.values()):
            print("non-finite metrics, stopping", m, flush=True)
            break
        if time.time() - last_eval > args.eval_every_min * 60:
            save_and_score()
            last_eval = time.time()
    save_and_score()
    summary = {"steps": step, "train_seconds": train_time, "images_per_second": step * args.batch_size / train_time,
               "batch_size": args.batch_size, "lr": args.lr, "preset": args.preset,
               "override": json.loads(args.override), "classifier": clf_name, "g_params": g_params,
               "d_params": d_params, "evals": evals, "training_health": gan_health(history[-200:])}
    write_json_atomic(summary, out / "summary.json")
    print("SUMMARY", json.dumps({k: v for k, v in summary.items() if k != "evals"}), flush=True)


if __name__ == "__main__":
    main()
