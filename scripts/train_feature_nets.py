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
* ``generic``: self-supervised contrastive net (SimCLR: Chen et al., 2020, "A Simple Framework
  for Contrastive Learning of Visual Representations", NT-Xent loss Eq. 1) on 32x32 RGB crops of
  ``builtin:photos`` (train split) mixed with ``builtin:shapes`` and ``builtin:digits`` (gray,
  upsampled). Two views per image: random resized crop (area 35-100%), horizontal flip, mild
  brightness/contrast/saturation jitter, 10% grayscale. The colour jitter is kept mild on
  purpose: FD in these features should see colour statistics. The default features of
  ``genimage eval`` for folders that no domain net fits.

Every net also gets ``domain.safetensors`` (a Gaussian on its features of its training data and
the 99th-percentile Mahalanobis distance on held-out data of its domain), which lets the
evaluation report warn when samples or data are out of the net's domain. ``--calibrate NAME``
(re)writes only that file for an existing net.

Your own domain: ``--only generic --photos-folder DIR --out DIR2`` trains the generic recipe on
your images instead of the built-in photos; then ``genimage eval ... --features DIR2/generic``.
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
from genimage.metrics.features import (DOMAIN_FILE, FEATURES_DIR, FeatureNet, FeatureNetConfig, SmallCNN,
                                       fit_domain, high_frequency_share, load_feature_net, save_feature_net)

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


def to_rgb32(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1|3, H, W)`` -> ``(N, 3, 32, 32)`` (gray repeated, bilinear resize)."""
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=x.shape[-1] > 32)
    return x


def generic_mix(split: str, n_photos: int, n_shapes: int, folder: str | None = None, seed: int = 0
                ) -> dict[str, torch.Tensor]:
    """Images of the generic net's domain, per source: photo crops, shapes, digits (32x32 RGB).

    ``split="train"``: photos train split (seed ``seed``), shapes seed 1, digits train split;
    ``"eval"``: photos eval split, shapes seed 2, digits eval split. With ``folder``, the photos
    are random crops of the images there (training) or other crops of them (``eval``).
    """
    if folder is not None:
        from genimage.data.folder import ImageFolderDataset

        ds = ImageFolderDataset(folder, image_size=32, crop="random", flip=True, seed=seed + (split == "eval"))
        reps = max(1, n_photos // max(1, len(ds)))
        views = []
        for e in range(reps):
            ds.set_epoch(e)
            views.append(stack_images(ds))
        return {"photos": torch.cat(views)[:n_photos]}
    photos = stack_images(load_builtin("photos", split=split, seed=seed, length=n_photos))
    shapes = stack_images(load_builtin("shapes", split="all", seed=1 if split == "train" else 2, length=n_shapes))
    digits = to_rgb32(stack_images(load_builtin("digits", split=split)))
    return {"photos": photos, "shapes": shapes, "digits": digits}


def simclr_views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image ``(N, 3, 32, 32)``: resized crop, flip, colour jitter, grayscale."""
    n = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    area, log_aspect = u(0.35, 1.0), u(math.log(3 / 4), math.log(4 / 3))
    sx = (area * log_aspect.exp()).sqrt().clamp(max=1.0)
    sy = (area / log_aspect.exp()).sqrt().clamp(max=1.0)
    tx, ty = (u(-1, 1) * (1 - sx)), (u(-1, 1) * (1 - sy))
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    gray = (0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3])
    sat = u(0.7, 1.3)[:, None, None, None]
    v = gray + sat * (v - gray)
    mean = v.mean((1, 2, 3), keepdim=True)
    v = (v - mean) * u(0.8, 1.2)[:, None, None, None] + mean + u(-0.15, 0.15)[:, None, None, None]
    to_gray = (torch.rand(n, generator=gen) < 0.1)[:, None, None, None]
    v = torch.where(to_gray, (0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]).expand_as(v), v)
    return v.clamp(-1, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss (Chen et al., 2020, Eq. 1), averaged over the ``2N`` anchors."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def generic_config(name: str = "generic") -> FeatureNetConfig:
    return FeatureNetConfig(
        name=name, in_channels=3, image_size=32, widths=(32, 64, 96), feature_dim=256, num_outputs=128,
        multilabel=False, class_names=(),
        source=f"genimage-generic-simclr-cnn (self-supervised on photo crops + shapes + digits; {DOMAIN_NOTE})",
    )


def train_generic(seed: int, minutes: float, batch: int = 128, temperature: float = 0.2, lr: float = 2e-3,
                  n_photos: int = 20_000, n_shapes: int = 4_000, folder: str | None = None,
                  max_steps: int = 100_000, log_every: int = 25) -> tuple[SmallCNN, FeatureNetConfig, dict]:
    """SimCLR on the generic mix for ``minutes`` of wall time (or ``max_steps``), cosine lr over the
    steps the first 20 steps' speed predicts."""
    t_data = time.perf_counter()
    parts = generic_mix("train", n_photos, n_shapes, folder, seed)
    x = torch.cat(list(parts.values()))
    weights = torch.cat([torch.full((len(v),), w / len(v)) for v, w in
                         zip(parts.values(), [0.7, 0.2, 0.1] if folder is None else [1.0])])
    data_seconds = time.perf_counter() - t_data
    cfg = generic_config()
    if folder is not None:  # the features of your own images say so
        import dataclasses

        cfg = dataclasses.replace(cfg, source=f"genimage-simclr-cnn trained on the images of {Path(folder).name} ({DOMAIN_NOTE})")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallCNN(cfg, dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0, c0 = time.perf_counter(), time.process_time()
    total, step, losses = max_steps, 0, []
    model.train()
    while step < total:
        idx = torch.multinomial(weights, batch, replacement=True, generator=gen)
        xb = x[idx]
        v = simclr_views(torch.cat([xb, xb]), gen)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, total, lr, warmup=20)
        z = model(v)
        loss = nt_xent(z[:batch], z[batch:], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step == 20:  # fix the schedule's length from the measured speed
            per_step = (time.perf_counter() - t0) / 20
            total = min(max_steps, max(40, int(minutes * 60 / per_step)))
            print(f"generic: {per_step:.2f} s/step -> {total} steps in {minutes} min", flush=True)
        if step % log_every == 0:
            print(f"generic step {step}/{total} loss {sum(losses[-log_every:]) / log_every:.3f}", flush=True)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    report = {
        "final_loss": round(sum(losses[-20:]) / min(20, len(losses)), 4), "first_loss": round(losses[0], 4),
        "batch": batch, "temperature": temperature, "lr": lr, "steps": total, "epochs": "-", "seed": seed,
        "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "data_seconds": round(data_seconds, 1), "parameters": count_params(model),
        "n_train": {k: len(v) for k, v in parts.items()},
        "data": (f"folder {folder}" if folder else
                 f"builtin:photos train split ({n_photos} crops, seed {seed}), builtin:shapes seed 1 ({n_shapes}), "
                 f"builtin:digits train split (1500, gray, upsampled to 32 px); sampled 70/20/10%"),
    }
    return model, cfg, report


def calibrate(net: FeatureNet, train: torch.Tensor, held_out: torch.Tensor, noise_check: bool = True) -> tuple[dict, dict]:
    """Domain statistics of ``net`` (:func:`~genimage.metrics.features.fit_domain`) and a check:
    share of held-out, uniform-noise and blurred-noise images beyond the threshold."""
    domain = fit_domain(net.features(train), net.features(held_out),
                        held_out_hf=high_frequency_share(net.prepare(held_out)))
    probe = FeatureNet(net.module, net.config, net.weights_sha256, domain)
    c, s = net.config.in_channels, net.config.image_size
    g = torch.Generator().manual_seed(7)
    noise = torch.rand(500, c, s, s, generator=g) * 2 - 1
    blur = F.avg_pool2d(torch.rand(500, c, s, s, generator=g), 3, stride=1, padding=1, count_include_pad=False) * 2 - 1
    check = {"threshold": round(float(domain["threshold"]), 3),
             "hf_max": round(float(domain["hf_max"]), 4),
             "held_out_outside": probe.domain_check(held_out)["outside"],
             "uniform_noise_outside": probe.domain_check(noise)["outside"],
             "blurred_noise_outside": probe.domain_check(blur)["outside"],
             "n_fit": len(train), "n_held_out": len(held_out)}
    return domain, check


def domain_data(name: str, folder: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) images that define the domain of shipped net ``name``."""
    if name == "digits":
        return (stack_images(load_builtin("digits", split="train")), stack_images(load_builtin("digits", split="eval")))
    if name == "shapes":
        return (stack_images(load_builtin("shapes", split="all", seed=1, length=4000)),
                stack_images(load_builtin("shapes", split="all", seed=2, length=2000)))
    train, test = generic_mix("train", 4000, 1000, folder, seed=0), generic_mix("eval", 2000, 500, folder, seed=0)
    return torch.cat(list(train.values())), torch.cat(list(test.values()))


def write_domain(name: str, folder: Path, photos_folder: str | None = None) -> dict:
    from genimage.utils.weights import save_safetensors, write_json_atomic

    (folder / DOMAIN_FILE).unlink(missing_ok=True)  # the net is loaded without its old statistics
    net = load_feature_net(folder)
    train, held_out = domain_data(name, photos_folder)
    domain, check = calibrate(net, train, held_out)
    save_safetensors(domain, folder / DOMAIN_FILE)
    os.chmod(folder / DOMAIN_FILE, 0o644)
    write_json_atomic(check, folder / "domain.json")
    return check


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
    "generic": "Self-supervised (SimCLR, NT-Xent) 32x32 RGB feature net on photo crops of `builtin:photos` plus "
               "`builtin:shapes` and gray `builtin:digits`; mild colour jitter so that colour statistics stay in the "
               "features. The default features of `genimage eval` for folders and `builtin:photos`. `classify` is "
               "meaningless for it (its outputs are the SimCLR projection).",
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
    elif name == "generic":
        test_line = (f"NT-Xent loss {report['first_loss']} -> {report['final_loss']} (batch {report['batch']}, "
                     f"temperature {report['temperature']}); domain check in `domain.json`")
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
    ap.add_argument("--only", choices=["digits", "shapes", "generic"], action="append",
                    help="train only these (repeatable; default digits and shapes)")
    ap.add_argument("--calibrate", choices=["digits", "shapes", "generic"], action="append",
                    help="only (re)write domain.safetensors of this existing net in --out (repeatable)")
    ap.add_argument("--generic-minutes", type=float, default=15.0, help="wall-time budget of the generic net")
    ap.add_argument("--generic-max-steps", type=int, default=100_000, help="step limit of the generic net")
    ap.add_argument("--photos-folder", help="train the generic net on this image folder instead of the built-in mix")
    ap.add_argument("--out", type=Path, default=FEATURES_DIR, help="output folder (default: the package's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--digits-epochs", type=int, default=60)
    ap.add_argument("--shapes-epochs", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for name in args.calibrate or []:
        print(name, write_domain(name, args.out / name, args.photos_folder if name == "generic" else None), flush=True)
    if args.calibrate and not args.only:
        return 0
    for name in args.only or ["digits", "shapes"]:
        if name == "generic":
            model, cfg, report = train_generic(args.seed, args.generic_minutes, folder=args.photos_folder,
                                               max_steps=args.generic_max_steps)
        elif name == "digits":
            model, cfg, report = train_digits(args.seed, args.digits_epochs)
        else:
            model, cfg, report = train_shapes(args.seed, args.shapes_epochs)
        write(name, model, cfg, report, args.out)
        report["domain"] = write_domain(name, args.out / name, args.photos_folder if name == "generic" else None)
        print(name, {k: v for k, v in report.items() if k != "data"}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
