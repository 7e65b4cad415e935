"""x4 super-resolution measured against ground truth: the trained upscaler vs bicubic (vs DDNM).

Held-out high-resolution images ``x`` (photo crops of the ``eval`` split — pixel rows the training
split never sees — and shapes scenes; with ``--tiled`` also images twice the window's size, upscaled tile by tile) are degraded to ``y = A x`` (4 x 4 block means, the operator
both the upscaler and DDNM assume) and upscaled back; each output ``o`` is scored against ``x``:

* PSNR (dB, on [0, 1]);
* a frozen-feature perceptual distance (genimage.metrics.feature_maps.perceptual_distance: LPIPS's
  formula with unit weights on the shipped shapes CNN's maps, at 64 px; lower is better);
* the consistency error ``mean |A o - y|`` in 8-bit levels (0 = the output averages back to the input).

Methods: bicubic; bicubic back-projected (DDNM's consistency step alone: ``o + A^+(y - A o)``); the
upscaler (``--model``) with 1 and N Euler steps, from noise or (strength < 1) from the bicubic image
noised to an intermediate time, free or with DDNM's projection at every step (``consistent``); on 128 px crops the upscaler runs tile by tile (editing/canvas.py). Today's DDNM
path (``genimage edit --upscale 4 --upscaler ddnm --model PRIOR`` with a pixel-space generator of the
high-resolution images) runs with ``--ddnm-model PRIOR`` on the 64 px set of the prior's data
(``--ddnm-data``), at each ``--ddnm-configs`` STEPS:STRENGTH.

    python benchmarks/superres.py --model src/genimage/weights/photos-x4 --n 64
    python benchmarks/superres.py --model runs/sr-shapes --n 32 --tiled 8 --tiled-data shapes   # 32 -> 128 px
    python benchmarks/superres.py --model runs/sr-shapes --n 32 --ddnm-model runs/shapes64-pixel --ddnm-data shapes
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a superres model (bundled name, model or run folder)")
    ap.add_argument("--n", type=int, default=64, help="images per data set")
    ap.add_argument("--configs", nargs="+", default=["1:1", "8:1", "4:0.5"],
                    help="STEPS:STRENGTH of the upscaler runs (strength < 1 starts from the noised bicubic image)")
    ap.add_argument("--tiled", type=int, default=16, help="128 px crops upscaled tile by tile (0 = skip)")
    ap.add_argument("--tiled-data", choices=["photos", "shapes"], default="photos",
                    help="what the tiled set is made of: eval-split photo crops or shapes scenes at twice the window")
    ap.add_argument("--ddnm-model", default=None,
                    help="a pixel-space generator at the window's size: DDNM rows with it as the prior")
    ap.add_argument("--ddnm-data", choices=["photos", "shapes"], default="shapes",
                    help="the 64 px set the DDNM prior models")
    ap.add_argument("--ddnm-configs", nargs="+", default=["16:1", "8:0.5"],
                    help="STEPS:STRENGTH of the DDNM runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from genimage.data.builtin import load_builtin
    from genimage.editing.canvas import _tiles
    from genimage.editing.known_region import block_repeat
    from genimage.editing.superres import load_upscaler
    from genimage.families.superres import degrade, upsample
    from genimage.metrics.feature_maps import perceptual_distance, psnr
    from genimage.samplers.noise import generators_for_seeds

    loaded = load_upscaler(args.model)
    model = loaded.model
    f, size = model.factor, model.config.image_size

    def stack(ds, n):
        return torch.stack([ds[i]["image"] for i in range(n)])

    sets = {"photos eval 64 px": stack(load_builtin("photos", image_size=size, split="eval", seed=3, length=args.n),
                                      args.n),
            "shapes eval 64 px": stack(load_builtin("shapes", image_size=size, split="eval", seed=3, length=args.n),
                                       args.n)}

    def back_project(o, y):
        return (o + block_repeat(y - degrade(o, f), f)).clamp(-1, 1)

    methods = {"bicubic": lambda y: upsample(y, f), "bicubic, back-projected": lambda y: back_project(upsample(y, f), y)}

    def parse_configs(specs):
        return [(int(c.split(":")[0]), float(c.split(":")[1])) for c in specs]

    configs = parse_configs(args.configs)

    def label(k, st):
        run = min(int(k * st + 1e-9), k)
        return f"{run} Euler step{'s' if run > 1 else ''}" + (f" (strength {st:g} of {k})" if st < 1 else "")

    for k, st in configs:
        for consistent in (False, True):
            name = f"upscaler, {label(k, st)}" + (", consistent" if consistent else "")
            methods[name] = (lambda y, k=k, st=st, c=consistent: model.upscale(
                y, generators_for_seeds(list(range(len(y)))), steps=k, consistent=c, strength=st))
    ddnm_methods = {}
    if args.ddnm_model:
        from genimage.editing.spec import EditSpec
        from genimage.pipeline import Pipeline

        prior = Pipeline.from_pretrained(args.ddnm_model)
        if prior.config.image_size != size or prior.config.autoencoder is not None:
            raise SystemExit(f"--ddnm-model must be a pixel-space model of {size} px images")
        for k, st in parse_configs(args.ddnm_configs):
            ddnm_methods[f"DDNM ({args.ddnm_model}), {label(k, st)}"] = (
                lambda y, k=k, st=st: prior(list(range(len(y))), options=prior.options(steps=k, bf16=False),
                                            batch_size=16, edit=EditSpec.upscale(y, size, st)))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, x in sets.items():
        y = degrade(x, f)
        results[set_name] = {}
        extra = ddnm_methods if set_name.startswith(args.ddnm_data) else {}
        for name, fn in {**methods, **extra}.items():
            t0 = time.perf_counter()
            o = fn(y).float()
            dt = (time.perf_counter() - t0) / len(x)
            results[set_name][name] = {
                "psnr": float(psnr(o, x).mean()), "perceptual": float(perceptual_distance(o, x).mean()),
                "consistency_levels": float((degrade(o, f) - y).abs().mean() * 127.5), "s_per_image": dt}
    if args.tiled:
        big = stack(load_builtin(args.tiled_data, image_size=2 * size, split="eval", seed=5, length=args.tiled),
                    args.tiled)
        y = degrade(big, f)
        set_name = f"{args.tiled_data} eval {2 * size} px, tiled"
        results[set_name] = {}
        for name, k, st, consistent in [("bicubic", 0, 1.0, False)] + [
                (f"upscaler tiled, {label(k, st)}, consistent", k, st, True) for k, st in configs]:
            t0 = time.perf_counter()
            outs = []
            for i in range(len(big)):
                if k == 0:
                    outs.append(upsample(y[i:i + 1], f)[0])
                    continue
                canvas = _tiles(y[i:i + 1], size, f, 1.0, 1, None, {}, {})
                low = canvas.spec.low
                sr = model.upscale(low, generators_for_seeds(canvas.seeds(i)), steps=k, consistent=consistent,
                                   strength=st)
                outs.append(canvas.assemble(sr))
            o = torch.stack(outs)
            dt = (time.perf_counter() - t0) / len(big)
            results[set_name][name] = {
                "psnr": float(psnr(o, big).mean()), "perceptual": float(perceptual_distance(o, big).mean()),
                "consistency_levels": float((degrade(o, f) - y).abs().mean() * 127.5), "s_per_image": dt,
                "tiles_per_image": canvas.rows if k else 0}
    print(f"model: {args.model} (sha256 {loaded.weights_sha256[:12]}, {loaded.config.training.get('steps')} "
          f"training steps); x{f}, {size // f} -> {size} px windows; {args.n} images per set")
    for set_name, rows in results.items():
        print(f"\n{set_name}\n| method | PSNR dB | perceptual | consistency (levels) | s/image |\n|---|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | {r['psnr']:.2f} | {r['perceptual']:.4f} | {r['consistency_levels']:.2f} | "
                  f"{r['s_per_image']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
