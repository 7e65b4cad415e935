#!/usr/bin/env python
"""Train genimage's domain feature networks and write them to src/genimage/weights/features/.

Usage (one CPU core, deterministic for a given seed and torch build)::

    OMP_NUM_THREADS=1 python scripts/train_feature_nets.py            # digits and shapes
    OMP_NUM_THREADS=1 python scripts/train_feature_nets.py --only digits --out /tmp/feats

Each net is a :class:`genimage.metrics.features.SmallCNN` classifier; its penultimate
activations are the features of FD / KID / PRDC / memorization, and its probabilities drive
the recognizability score. Tasks:

* ``digits``: 10-class digit classifier on ``builtin:digits`` (8x8, 1 channel), trained on
  split ``train`` (1,500 images) with random 1-px shifts, evaluated on split ``eval`` (297).
  Outlier exposure (Hendrycks, Mazeika & Dietterich, 2019, "Deep Anomaly Detection with
  Outlier Exposure", Eq. 1 with lambda = 0.5): each batch also holds non-digits (uniform noise,
  blurred noise, pixel-shuffled digits) whose target is the uniform distribution, so the
  classifier is not confidently wrong on junk - that is what makes "share of samples with
  confidence >= 0.9" a meaningful recognizability score for generated digits.
* ``shapes``: multi-label classifier of which of the 18 colour-shape pairs a ``builtin:shapes``
  image (32x32 RGB) contains (sigmoid outputs, binary cross-entropy), trained on 24,000
  ``split="all"`` images of seed 1 (so held-out compositions are included) and evaluated on
  2,000 images of seed 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genimage.data.builtin import load_builtin
from genimage.data.shapes import ALL_PAIRS
from genimage.metrics.features import FEATURES_DIR, FeatureNetConfig, SmallCNN, save_feature_net

DOMAIN_NOTE = "domain features; not comparable to published FID"


def stack_images(ds) -> torch.Tensor:
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` px in x and y (independently), filling with -1 (background)."""
    b, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    oy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None].expand(b, c, h, w + 2 * p)
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :].expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def outliers(real: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` non-digit images: uniform noise, blurred noise rescaled to [-1, 1], pixel-shuffled digits."""
    _, c, h, w = real.shape
    k = n // 3
    noise = torch.rand(k, c, h, w, generator=gen) * 2 - 1
    blur = F.avg_pool2d(torch.rand(k, c, h, w, generator=gen), 3, stride=1, padding=1, count_include_pad=False)
    lo, hi = blur.amin((1, 2, 3), keepdim=True), blur.amax((1, 2, 3), keepdim=True)
    blur = (blur - lo) / (hi - lo + 1e-8) * 2 - 1
    m = n - 2 * k
    src = real[torch.randint(0, real.shape[0], (m,), generator=gen)].flatten(1)
    perm = torch.argsort(torch.rand(m, src.shape[1], generator=gen), dim=1)
    shuffled = src.gather(1, perm).view(m, c, h, w)
    return torch.cat([noise, blur, shuffled])


def cosine_lr(step: int, total: int, base: float, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def count_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def train_digits(seed: int, epochs: int) -> tuple[SmallCNN, FeatureNetConfig, dict]:
    train = load_builtin("digits", split="train")
    test = load_builtin("digits", split="eval")
    x, y = stack_images(train), torch.as_tensor(train.labels)
    xt, yt = stack_images(test), torch.as_tensor(test.labels)
    cfg = FeatureNetConfig(
        name="digits", in_channels=1, image_size=8, widths=(32, 48), feature_dim=128, num_outputs=10,
        multilabel=False, class_names=tuple(str(d) for d in range(10)),
        source=f"genimage-digits-cnn ({DOMAIN_NOTE})",
    )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallCNN(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    batch, oe_batch, lam = 64, 32, 0.5
    steps_per_epoch = math.ceil(len(y) / batch)
    total = epochs * steps_per_epoch
    step = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            xb = random_shift(x[idx], gen)
            ob = outliers(x, oe_batch, gen)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, 3e-3)
            logits = model(torch.cat([xb, ob]))
            loss = F.cross_entropy(logits[: len(idx)], y[idx])
            loss = loss + lam * (-F.log_softmax(logits[len(idx):], dim=1).mean(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(xt), 1)
        noise = torch.rand(1000, 1, 8, 8, generator=torch.Generator().manual_seed(123)) * 2 - 1
        pn = torch.softmax(model(noise), 1)
        ptrain = torch.softmax(model(x), 1)
    report = {
        "test_accuracy": float((probs.argmax(1) == yt).float().mean()),
        "train_accuracy": float((ptrain.argmax(1) == y).float().mean()),
        "test_confident_fraction_0.9": float((probs.max(1).values >= 0.9).float().mean()),
        "noise_confident_fraction_0.9": float((pn.max(1).values >= 0.9).float().mean()),
        "n_train": len(y), "n_test": len(yt), "epochs": epochs, "steps": total, "seed": seed,
        "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "parameters": count_params(model),
        "data": "builtin:digits, train split (images 0..1499) -> eval split (1500..1796)",
    }
    return model, cfg, report


def shapes_labels(ds) -> torch.Tensor:
    """Multi-hot ``(N, 18)``: which colour-shape pairs each scene contains."""
    index = {pair: i for i, pair in enumerate(ALL_PAIRS)}
    y = torch.zeros(len(ds), len(ALL_PAIRS))
    for i in range(len(ds)):
        for o in ds.scene(i).objects:
            y[i, index[(o.colour, o.shape)]] = 1.0
    return y


def train_shapes(seed: int, epochs: int, n_train: int = 24_000, n_test: int = 2_000
                 ) -> tuple[SmallCNN, FeatureNetConfig, dict]:
    train = load_builtin("shapes", split="all", seed=1, length=n_train)
    test = load_builtin("shapes", split="all", seed=2, length=n_test)
    x, y = stack_images(train), shapes_labels(train)
    xt, yt = stack_images(test), shapes_labels(test)
    cfg = FeatureNetConfig(
        name="shapes", in_channels=3, image_size=32, widths=(16, 32, 64), feature_dim=128,
        num_outputs=len(ALL_PAIRS), multilabel=True, class_names=tuple(f"{c} {s}" for c, s in ALL_PAIRS),
        source=f"genimage-shapes-cnn ({DOMAIN_NOTE})",
    )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallCNN(cfg, dropout=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    batch = 128
    total = epochs * math.ceil(n_train / batch)
    step = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train, batch):
            idx = order[i:i + batch]
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, 2e-3)
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    with torch.no_grad():
        pred = torch.cat([torch.sigmoid(model(xt[i:i + 500])) for i in range(0, n_test, 500)]) >= 0.5
    truth = yt.bool()
    report = {
        "test_exact_set_accuracy": float((pred == truth).all(1).float().mean()),
        "test_label_accuracy": float((pred == truth).float().mean()),
        "test_count_accuracy": float((pred.sum(1) == truth.sum(1)).float().mean()),
        "n_train": n_train, "n_test": n_test, "epochs": epochs, "steps": total, "seed": seed,
        "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "parameters": count_params(model),
        "data": f"builtin:shapes split=all: {n_train} images of seed 1 -> {n_test} images of seed 2",
    }
    return model, cfg, report


README = """# genimage feature network: `{name}`

{what}

| | |
|---|---|
| features | `{source}` |
| architecture | SmallCNN, conv widths {widths}, feature dim {feature_dim}, {parameters:,} parameters |
| data | {data} |
| training | {epochs} epochs, {steps} steps, seed {seed}, {train_cpu_seconds} s CPU on one thread \
({train_seconds} s wall, shared machine) |
| test | {test_line} |
| weights | `model.safetensors` sha256 `{sha256}` |

Reproduce:

```bash
OMP_NUM_THREADS=1 python scripts/train_feature_nets.py --only {name}
```

Features are the penultimate activations (after ReLU). Scores computed in these features
(FD, KID, precision/recall/density/coverage) are domain-specific and **not comparable to
published FID/KID numbers**, which use Inception-v3.
"""

WHAT = {
    "digits": "10-class classifier of 8x8 grayscale handwritten digits (scikit-learn digits), trained with "
              "random 1-px shifts and outlier exposure (noise images -> uniform target). Used for "
              "`digits_recognizability` and as the feature space of the digits metrics.",
    "shapes": "Multi-label classifier: which of the 18 colour-shape pairs a 32x32 `builtin:shapes` image "
              "contains (sigmoid per pair). Used as the feature space of the shapes metrics.",
}


def write(name: str, model: SmallCNN, cfg: FeatureNetConfig, report: dict, out: Path) -> None:
    from genimage.utils.weights import sha256_file, write_json_atomic
    from genimage.utils.atomic import atomic_write_text

    folder = out / name
    save_feature_net(model, cfg, folder)
    write_json_atomic(report, folder / "metrics.json")
    os.chmod(folder / "model.safetensors", 0o644)  # the atomic writer's temp file is owner-only
    if name == "digits":
        test_line = (f"accuracy {report['test_accuracy']:.2%} on the eval split ({report['n_test']} images); "
                     f"confidence >= 0.9 on {report['test_confident_fraction_0.9']:.1%} of them and on "
                     f"{report['noise_confident_fraction_0.9']:.1%} of uniform-noise images")
    else:
        test_line = (f"exact pair-set accuracy {report['test_exact_set_accuracy']:.2%}, per-label "
                     f"{report['test_label_accuracy']:.2%}, object count {report['test_count_accuracy']:.2%} "
                     f"({report['n_test']} held-out-seed images)")
    text = README.format(name=name, what=WHAT[name], source=cfg.source, widths=list(cfg.widths),
                         feature_dim=cfg.feature_dim, test_line=test_line,
                         sha256=sha256_file(folder / "model.safetensors"), **report)
    atomic_write_text(folder / "README.md", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["digits", "shapes"], action="append", help="train only these (repeatable)")
    ap.add_argument("--out", type=Path, default=FEATURES_DIR, help="output folder (default: the package's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--digits-epochs", type=int, default=60)
    ap.add_argument("--shapes-epochs", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.only or ["digits", "shapes"]:
        if name == "digits":
            model, cfg, report = train_digits(args.seed, args.digits_epochs)
        else:
            model, cfg, report = train_shapes(args.seed, args.shapes_epochs)
        write(name, model, cfg, report, args.out)
        print(name, {k: v for k, v in report.items() if k != "data"}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
