#!/usr/bin/env python
"""Train genimage's generated-image detectors and write them to src/genimage/weights/detectors/.

Usage (one CPU core; samples are cached in --cache so reruns only train)::

    OMP_NUM_THREADS=1 python scripts/train_detectors.py [--only digits] [--cache /work/runs/detector_data]

Each detector is a :class:`genimage.metrics.features.SmallCNN` with two outputs, ``real`` and
``generated``, for one domain. It is trained on real training images against samples of the
bundled model of that domain with its default sampling, and scored with held-out data:

* ``digits`` (8x8 gray): the 1,500 ``train``-split digits vs 3,000 ``digits``
  samples (seeds 0-2,999, classes cycled);
* ``shapes`` (32x32 RGB): 6,000 ``train``-split scenes vs 6,000 ``shapes`` samples (seeds
  0-5,999, captions of the train split), saved without the watermark, since the detector must
  not merely learn the mark.

The held-out test (``benchmarks/detector_eval.py``) uses real eval-split images, samples with
other seeds, and samples of other generators.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genimage.data.builtin import load_builtin
from genimage.metrics.features import FeatureNetConfig, SmallCNN, save_feature_net
from genimage.metrics.features import FEATURES_DIR

DETECTORS_DIR = FEATURES_DIR.parent / "detectors"
SOURCE = "genimage generated-image detector ({name}): real {name} images vs samples of the bundled {name} model"


def stack(ds, n: int | None = None) -> torch.Tensor:
    n = len(ds) if n is None else n
    return torch.stack([ds[i]["image"] for i in range(n)])


def samples(name: str, n: int, seed0: int, cache: Path) -> torch.Tensor:
    """``n`` samples of the bundled ``name`` model (seeds ``seed0 ..``), cached as a tensor file."""
    from genimage.pipeline import Pipeline

    path = cache / f"{name}_{seed0}_{n}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    pipe = Pipeline.from_pretrained(name)
    seeds = list(range(seed0, seed0 + n))
    t0 = time.perf_counter()
    if name == "shapes":
        from genimage.data.shapes import sample_captions

        out = pipe(seeds, prompts=sample_captions(n, seed=seed0 + 1, split="train"), batch_size=100)
    else:
        out = pipe(seeds, labels=[s % 10 for s in seeds], batch_size=500)
    out = ((out.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # as saved to PNG (8-bit)
    print(f"{name}: {n} samples in {time.perf_counter() - t0:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def train(name: str, real: torch.Tensor, fake: torch.Tensor, widths: tuple[int, ...], epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    config = FeatureNetConfig(name=f"{name}-detector", in_channels=real.shape[1], image_size=real.shape[-1],
                              widths=widths, feature_dim=64, num_outputs=2, multilabel=False,
                              class_names=("real", "generated"), source=SOURCE.format(name=name))
    model = SmallCNN(config)
    x = torch.cat([real, fake])
    y = torch.cat([torch.zeros(len(real), dtype=torch.long), torch.ones(len(fake), dtype=torch.long)])
    weight = torch.tensor([len(y) / (2 * len(real)), len(y) / (2 * len(fake))])  # balanced classes
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    batch = 128
    total = epochs * math.ceil(len(y) / batch)
    g = torch.Generator().manual_seed(seed)
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            xb = x[idx]
            if torch.rand((), generator=g) < 0.5:
                xb = xb.flip(-1) if name == "shapes" else xb  # shapes scenes are mirror-symmetric in law
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(xb), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    return model, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["digits", "shapes"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/genimage_detector_data"))
    ap.add_argument("--out", type=Path, default=DETECTORS_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    jobs = {
        "digits": lambda: (stack(load_builtin("digits", split="train")), samples("digits", 3000, 0, args.cache),
                           (32, 64), 30),
        "shapes": lambda: (stack(load_builtin("shapes", split="train", length=6000)),
                           samples("shapes", 6000, 0, args.cache), (32, 64, 96), 12),
    }
    for name, make in jobs.items():
        if args.only and name != args.only:
            continue
        real, fake, widths, epochs = make()
        t0 = time.perf_counter()
        model, config = train(name, real, fake, widths, epochs)
        save_feature_net(model, config, args.out / name)
        print(f"{name}: trained on {len(real)} real + {len(fake)} generated in {time.perf_counter() - t0:.0f} s "
              f"-> {args.out / name}", flush=True)


if __name__ == "__main__":
    main()
