"""End to end: images/s of a bundled model under each ``--runtime``, side by side in one process.

The companion of ``benchmarks/cpu_runtimes.py`` (one backbone forward): here the whole
``Pipeline.__call__`` is timed (sampler, guidance, the PyTorch decoder; text encoding
excluded, as in ``generate_speed.py``), at the model's default steps and guidance. One
pipeline per runtime: eager fp32, eager at the default precision (bf16 autocast where
``bf16_is_fast``), ONNX Runtime and OpenVINO. Each pipeline's first call, which exports the
backbone at that batch's shapes and opens the sessions, is timed separately (``first_call_s``,
what a one-shot ``genimage generate`` pays; later processes read the export from the cache
but still open the sessions). Then the pipelines are timed in interleaved rounds, in a
rotating order; the table has median images/s, the ratio to eager fp32 and the largest
difference of the uint8 PNG pixels from eager fp32's.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cpu_runtimes_generate.py [--model shapes] [--batches 8,64] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--batches", default="8,64")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runtimes", default="eager,eager-default,onnxruntime,openvino")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_runtimes_generate.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import os

    os.environ.setdefault("GENIMAGE_CACHE_DIR", tempfile.mkdtemp(prefix="genimage-bench-"))  # fresh exports
    from genimage.data.shapes import sample_captions
    from genimage.pipeline import Pipeline
    from genimage.provenance.record import png_pixels

    result = dict(command=" ".join(["python", *sys.argv]), model=args.model, threads=1, batches=[])
    for batch in (int(b) for b in args.batches.split(",")):
        pipes, opts, first = {}, {}, {}
        prompts = sample_captions(batch, seed=0)
        seeds = list(range(batch))
        for name in args.runtimes.split(","):
            pipe = Pipeline.from_pretrained(args.model)
            pipe.conditioner.text_encoder.encode(prompts)  # encoder load and first encode are not generation
            default = pipe.options()
            opts[name] = pipe.options(bf16=False) if name != "eager-default" else default
            if name not in ("eager", "eager-default"):
                pipe.use_runtime(name)
            t = time.perf_counter()
            pipe(seeds, prompts=prompts, options=opts[name], batch_size=batch)
            first[name] = round(time.perf_counter() - t, 3)
            pipes[name] = pipe
        order, times, images = list(pipes), {n: [] for n in pipes}, {}
        for i in range(args.rounds):
            for name in order[i % len(order):] + order[: i % len(order)]:
                t = time.perf_counter()
                images[name] = pipes[name](seeds, prompts=prompts, options=opts[name], batch_size=batch)
                times[name].append(time.perf_counter() - t)
        def pixels(batch_images):
            return torch.stack([png_pixels(im) for im in batch_images]).int()

        ref = pixels(images["eager"])
        base = statistics.median(times["eager"])
        rows = []
        for name in order:
            med = statistics.median(times[name])
            diff = (pixels(images[name]) - ref).abs()
            rows.append(dict(runtime=name, bf16=opts[name].bf16, images_per_s=round(batch / med, 1),
                             ratio_to_eager=round(base / med, 3), first_call_s=first[name],
                             max_pixel_diff=int(diff.max()), differing_values=int((diff > 0).sum())))
        result["batches"].append(dict(batch=batch, rows=rows))
        print(f"{args.model}, {batch} images per call, 1 thread")
        print(f"  {'runtime':14s} {'bf16':>5s} {'img/s':>7s} {'x eager':>8s} {'first s':>8s} {'max px diff':>11s}")
        for r in rows:
            print(f"  {r['runtime']:14s} {str(r['bf16']):>5s} {r['images_per_s']:7.1f} {r['ratio_to_eager']:8.3f} "
                  f"{r['first_call_s']:8.2f} {r['max_pixel_diff']:11d}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
