"""Generation on each available device: per-seed batch invariance, agreement between devices,
and speed, for a bundled model.

    python benchmarks/device_generation_check.py [--model digits] [-n 256] [--repeats 3]

For every device here (the CPU, and CUDA where there is one) and both precisions, it generates
``-n`` images in one batch and the first 8 of them one at a time with the same seeds, and
prints the largest difference between the two (0 means "image i depends only on seed i" holds
bit for bit), the largest difference from the CPU fp32 images, and the median images/s of
``--repeats`` batch runs. Differences are in 8-bit levels of the saved PNGs (0-255).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genimage.pipeline import Pipeline
from genimage.provenance.record import png_pixels
from genimage.utils.precision import bf16_is_fast


def levels(images: torch.Tensor) -> torch.Tensor:
    return torch.stack([png_pixels(im) for im in images]).to(torch.int16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    seeds = list(range(args.n))
    labels = [i % pipe.config.num_classes for i in seeds] if pipe.config.num_classes else None
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"model {args.model}; torch {torch.__version__}; cpu bf16 native: {bf16_is_fast('cpu')}; "
          f"{torch.get_num_threads()} CPU threads" + (f"; {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print("| device | precision | batch vs one-at-a-time, max level diff | vs CPU fp32, max level diff "
          "| images/s (batch of n, median) |")
    print("|---|---|---|---|---|")
    reference = None
    for device in devices:
        pipe.to(device)
        for bf16 in (False, True):
            opts = pipe.options(bf16=bf16)
            pipe(seeds[:8], labels=labels[:8] if labels else None, options=opts)  # warm-up
            times = []
            for _ in range(args.repeats):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                batch = pipe(seeds, labels=labels, options=opts, batch_size=args.n)
                times.append(time.perf_counter() - t0)
            singles = torch.cat([pipe([s], labels=[labels[s]] if labels else None, options=opts) for s in seeds[:8]])
            batch_levels = levels(batch)
            if reference is None:
                reference = batch_levels
            invariance = int((batch_levels[:8] - levels(singles)).abs().max())
            vs_cpu = int((batch_levels - reference).abs().max())
            print(f"| {device} | {'bf16' if bf16 else 'fp32'} | {invariance} | {vs_cpu} | "
                  f"{args.n / statistics.median(times):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
