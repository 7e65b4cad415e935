"""The folder recipe of ``genimage train --data FOLDER`` on photo crops: FD against time.

Three steps (run them in order; the training between them is a plain ``genimage train``)::

    # 1. a folder like a user's: 302 crops of 128 px from builtin:photos (train split)
    python benchmarks/photo_recipe.py export --out /tmp/photo_folder
    # 2. train with no other flags (the recipe plans for 15 minutes and prints its choices)
    OMP_NUM_THREADS=1 genimage train --data /tmp/photo_folder --out /tmp/photo_run
    # 3. FD in the generic features: the untrained model (the same architecture, fresh
    #    initialisation) vs each checkpoint; sample grids beside the results
    OMP_NUM_THREADS=1 python benchmarks/photo_recipe.py measure --run /tmp/photo_run \\
        --data /tmp/photo_folder --grids benchmarks/results/photo_recipe

``measure`` draws ``-n`` samples per model (seed i for image i, the model's default sampler)
and computes FD in the ``generic`` features against the folder's images at the model's
32 px (centre crop; the recipe trains on random crops and flips of the same images), plus
the share of samples the domain check puts outside the features' domain.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch


def export(out: Path, n: int, size: int, seed: int) -> None:
    from PIL import Image

    from genimage.data.builtin import load_builtin

    ds = load_builtin("photos", split="train", image_size=size, length=n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x = ((ds[i]["image"].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        Image.fromarray(x).save(out / f"crop_{i:04d}.png")
    print(f"wrote {n} crops of {size} px to {out}")


def untrained_copy(checkpoint: Path, dest: Path, seed: int = 0) -> Path:
    """``checkpoint``'s model folder with freshly initialised weights (what step 0 samples)."""
    from genimage.families import FAMILIES, load_all_families
    from genimage.models.config import ModelConfig
    from genimage.utils.weights import save_safetensors

    load_all_families()
    cfg = ModelConfig.load(checkpoint)
    torch.manual_seed(seed)
    model = FAMILIES.get(cfg.family).model_cls(cfg)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(checkpoint, dest)
    save_safetensors(model.ema_module().state_dict(), dest / "model.safetensors")
    return dest


def measure(run: Path, data: str, n: int, grids: Path | None, out: Path | None) -> None:
    from genimage.data.image_io import save_image_grid
    from genimage.data.source import open_dataset
    from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples
    from genimage.families.io import load_generator
    from genimage.metrics.features import load_feature_net
    from genimage.metrics.frechet import frechet_distance

    net = load_feature_net("generic")
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    if not ckpts:
        raise SystemExit(f"no checkpoints in {run}/checkpoints")
    models = [("untrained", untrained_copy(ckpts[-1], run / "untrained"))] + [(c.name, c) for c in ckpts]
    first = load_generator(models[0][1])
    ref = dataset_images(open_dataset(data, image_size=first.config.image_size), 5000)
    fref = net.features(ref)
    metrics = {}
    mfile = run / "metrics.jsonl"
    if mfile.is_file():
        for line in mfile.read_text().splitlines():
            r = json.loads(line)
            metrics[r.get("step")] = r
    rows = []
    for name, folder in models:
        lg = load_generator(folder)
        t0 = time.perf_counter()
        samples, _ = draw_samples(lg.model, n, 0, conditions_for(lg.config, n, None))
        secs = time.perf_counter() - t0
        f = net.features(samples)
        step = 0 if name == "untrained" else int(name.split("-")[1])
        wall = metrics.get(step, {}).get("wall_time_s")
        dom = net.domain_check(features=f)
        row = {"model": name, "step": step, "train_wall_s": wall, "fd": round(frechet_distance(fref, f), 2),
               "outside_domain": dom["outside"], "sampling_s": round(secs, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if grids is not None:
            grids.mkdir(parents=True, exist_ok=True)
            save_image_grid(samples[:64], grids / f"{run.name}_{name}.png", nrow=8)
    if grids is not None:
        save_image_grid(ref[:64], grids / f"{run.name}_data.png", nrow=8)
    base = rows[0]["fd"]
    for r in rows[1:]:
        print(f"{r['model']}: FD {r['fd']} = {r['fd'] / base:.2f} x the untrained model's {base}")
    if out is not None:
        out.write_text(json.dumps({"run": str(run), "data": data, "n": n, "reference": len(ref),
                                   "features": net.source, "rows": rows}, indent=2))


def ae_psnr(autoencoder: str, n: int, seed: int, size: int | None = None) -> None:
    """Reconstruction PSNR of an autoencoder on held-out ``builtin:photos`` crops (eval split:
    the bottom quarter of every photo, never seen in training) and on training-split crops."""
    from genimage.data.builtin import load_builtin
    from genimage.latent.autoencoder import load_autoencoder

    ae = load_autoencoder(autoencoder, image_size=size)
    print(f"{ae.config.image_size} px -> latents {list(ae.latent_shape)}")
    for split in ("eval", "train"):
        ds = load_builtin("photos", split=split, image_size=ae.config.image_size, length=n, seed=seed)
        x = torch.stack([ds[i]["image"] for i in range(n)])
        with torch.no_grad():
            xr = torch.cat([ae.model.decode(ae.model.encode(x[i:i + 100])) for i in range(0, n, 100)]).clamp(-1, 1)
        mse = ((xr - x) / 2).square().flatten(1).mean(1).clamp_min(1e-10)
        print(f"{split}: PSNR {float((-10 * torch.log10(mse)).mean()):.2f} dB (mean over {n} crops; "
              f"{float(-10 * torch.log10(mse.mean())):.2f} dB of the mean MSE)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write builtin:photos crops to a folder")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("-n", type=int, default=302)
    e.add_argument("--size", type=int, default=128)
    e.add_argument("--seed", type=int, default=23)
    m = sub.add_parser("measure", help="FD of the untrained model and of each checkpoint")
    m.add_argument("--run", type=Path, required=True)
    m.add_argument("--data", required=True)
    m.add_argument("-n", type=int, default=1000)
    m.add_argument("--grids", type=Path)
    m.add_argument("--out", type=Path)
    p = sub.add_parser("ae-psnr", help="reconstruction PSNR of an autoencoder on builtin:photos crops")
    p.add_argument("autoencoder")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--size", type=int, help="image side (a multiple of the factor; default: its training size)")
    args = ap.parse_args()
    if args.cmd == "ae-psnr":
        ae_psnr(args.autoencoder, args.n, args.seed, args.size)
    elif args.cmd == "export":
        export(args.out, args.n, args.size, args.seed)
    else:
        measure(args.run, args.data, args.n, args.grids, args.out)


if __name__ == "__main__":
    main()
