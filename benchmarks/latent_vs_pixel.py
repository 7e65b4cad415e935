"""Latent vs pixel diffusion on builtin shapes (32 px RGB), same DiT width and depth, on CPU.

With a trained f4 KL autoencoder (32x32x3 -> 8x8x4; Rombach et al. 2022) this measures, in
one process and side by side:

* training images/s: the generic trainer's step (data fetch, flow-matching loss, AdamW, EMA)
  at batch 64, medians over steps, the models' steps interleaved so that load changes on
  the machine hit all of them alike. Pixel space renders the shapes on the fly (as
  ``genimage train`` does); latent space reads the latent cache;
* sampling images/s at 16 Euler steps (latent: including the per-image decode);
* the one-off cost of encoding the latent cache (and of reading it back: a cache hit);
* the autoencoder's reconstruction PSNR on 500 held-out images (another seed, so other
  scenes than its training set).

Models (unconditional, DiT preset ``--preset``): ``pixel/p4`` (32x32x3, patch 4: 64 tokens),
``latent/p1`` (8x8x4, patch 1: 64 tokens, the same sequence length) and ``latent/p2``
(8x8x4, patch 2: 16 tokens).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/latent_vs_pixel.py --autoencoder /tmp/ae_shapes_f4 \\
        [--preset small] [--steps 15] [--cache-items 5000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genimage.data.builtin import load_builtin
from genimage.generation import SamplingOptions, generate
from genimage.latent.autoencoder import SHA_KEY, load_autoencoder
from genimage.latent.cache import load_or_build_latent_cache
from genimage.models.config import ModelConfig
from genimage.models.presets import backbone_config
from genimage.training.loop import Trainer, TrainConfig


def model_config(preset: str, size: int, channels: int, patch: int, latent=None) -> ModelConfig:
    bc = backbone_config("dit", preset, image_size=size, channels=channels, overrides={"patch_size": patch})
    extra = {}
    if latent is not None:
        ae, shape = latent
        extra = dict(autoencoder=str(ae.folder), latent_shape=list(shape), training={SHA_KEY: ae.sha256})
    return ModelConfig(backbone="dit", backbone_config=bc, objective="flow-matching", path="linear",
                       prediction="velocity", image_size=32, channels=3, steps=16, **extra)


def sampling_rate(trainer: Trainer, n: int, repeats: int) -> float:
    model = trainer.sampling_model()
    opts = SamplingOptions(sampler="euler", schedule="uniform", steps=16, guidance=1.0, bf16=False)
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        images = generate(model.denoiser, model.config, model.conditioner, seeds=list(range(r * n, (r + 1) * n)),
                          options=opts, batch_size=n)
        rates.append(n / (time.perf_counter() - t0))
        assert images.shape == (n, 3, 32, 32)
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autoencoder", default="/tmp/ae_shapes_f4")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15, help="timed training steps per model (after 2 warm-up)")
    ap.add_argument("--cache-items", type=int, default=5000, help="training images encoded into the cache")
    ap.add_argument("--sample-n", type=int, default=32)
    ap.add_argument("--sample-repeats", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    t_start = time.perf_counter()
    res: dict = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                 "torch": torch.__version__, "preset": args.preset, "batch": args.batch}
    ae = load_autoencoder(args.autoencoder)
    res["autoencoder"] = {"folder": str(ae.folder), "sha256": ae.sha256, "latent_shape": list(ae.latent_shape),
                          "scale_factor": ae.model.scale_factor}

    held = load_builtin("shapes", length=args.heldout, split="train", seed=12345)
    x = torch.stack([held[i]["image"] for i in range(len(held))])
    res["reconstruction_psnr_db_heldout"] = round(ae.model.reconstruction_psnr(x), 3)
    print(f"reconstruction PSNR on {len(held)} held-out images: {res['reconstruction_psnr_db_heldout']:.2f} dB",
          flush=True)

    train = load_builtin("shapes", length=args.cache_items, split="train", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "cache"
        miss = load_or_build_latent_cache(train, ae, cache_dir)
        hit = load_or_build_latent_cache(train, ae, cache_dir)
        assert not miss.hit and hit.hit and torch.equal(miss.latents, hit.latents)
        size = sum(p.stat().st_size for p in miss.folder.iterdir())
        res["cache"] = {"items": len(train), "encode_s": round(miss.seconds, 2),
                        "encode_ms_per_image": round(1000 * miss.seconds / len(train), 3),
                        "hit_s": round(hit.seconds, 3), "bytes": size, "latent_std": miss.meta["latent_std"]}
        print(f"latent cache: encoded {len(train)} images in {miss.seconds:.1f}s "
              f"({1000 * miss.seconds / len(train):.2f} ms/image), read back in {hit.seconds:.2f}s, "
              f"{size / 1e6:.1f} MB", flush=True)
        latent_data = miss.dataset(train)

        tc = dict(steps=10**6, batch_size=args.batch, lr=3e-4, warmup_steps=100, ema_decay=0.999, progress=False,
                  checkpoint_every=0, seed=0)
        specs = {"pixel/p4": (model_config(args.preset, 32, 3, 4), train),
                 "latent/p1": (model_config(args.preset, 8, 4, 1, (ae, ae.latent_shape)), latent_data),
                 "latent/p2": (model_config(args.preset, 8, 4, 2, (ae, ae.latent_shape)), latent_data)}
        trainers = {name: Trainer(mc, TrainConfig(**tc), data, Path(tmp) / name.replace("/", "_"))
                    for name, (mc, data) in specs.items()}
        res["models"] = {}
        for name, tr in trainers.items():
            bc = tr.mc.backbone_config
            tokens = (bc["image_size"] // bc["patch_size"]) ** 2
            res["models"][name] = {"input": [bc["in_channels"], bc["image_size"], bc["image_size"]],
                                   "patch": bc["patch_size"], "tokens": tokens,
                                   "parameters": sum(p.numel() for p in tr.network.parameters())}
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for step in range(args.steps + 2):
            for name, tr in trainers.items():
                t0 = time.perf_counter()
                tr.train_step()
                if step >= 2:
                    times[name].append(time.perf_counter() - t0)
            print(f"train step {step + 1}/{args.steps + 2}: "
                  + ", ".join(f"{n} {args.batch / times[n][-1]:.1f} img/s" for n in trainers if times[n]), flush=True)
        for name, tr in trainers.items():
            med = statistics.median(times[name])
            res["models"][name].update(train_images_per_s=round(args.batch / med, 2), train_step_s=round(med, 3),
                                       final_loss=round(tr.history[-1], 4))
        for name, tr in trainers.items():
            rate = sampling_rate(tr, args.sample_n, args.sample_repeats)
            res["models"][name]["sample_images_per_s_16_euler"] = round(rate, 3)
            print(f"{name}: sampling {rate:.2f} images/s at 16 Euler steps", flush=True)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
