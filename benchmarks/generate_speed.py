"""Generation speed of a model at its default steps and guidance (model loading excluded).

    python benchmarks/generate_speed.py [--model shapes] [--batch 64] [--repeats 5]

Prints images/s as the median over repeats of generating one batch of prompts (shapes
captions for text models, cycling labels for class models).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    opts = pipe.options()
    seeds = list(range(args.batch))
    prompts = labels = None
    if pipe.conditioner.uses_text:
        from genimage.data.shapes import sample_captions

        prompts = sample_captions(args.batch, seed=0)
        pipe.conditioner.text_encoder.encode(prompts)  # encoder load and first encode are not generation
    elif pipe.conditioner.uses_labels:
        labels = [i % pipe.config.num_classes for i in seeds]
    pipe(seeds[:2], labels=labels[:2] if labels else None, prompts=prompts[:2] if prompts else None, options=opts)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pipe(seeds, labels=labels, prompts=prompts, options=opts, batch_size=args.batch)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    nfe = count_nfe(pipe, opts)
    print(f"model {args.model}: {opts.sampler} {opts.steps} steps, guidance {opts.guidance}"
          f"{f' in t={opts.guidance_interval}' if opts.guidance_interval else ''}, bf16 {opts.bf16}, "
          f"batch {args.batch}, {args.threads} threads")
    print(f"{args.batch / med:.1f} images/s (median of {args.repeats}; {nfe} network evaluations per image, "
          "both guidance branches counted)")


def count_nfe(pipe, opts) -> int:
    """Network evaluations per image, counted by running one image through a counting wrapper."""
    from genimage.conditioning.cfg import CFGDenoiser

    counts = {"n": 0}
    inner = CFGDenoiser.forward

    def counting(self, x, t, cond=None):
        counts["n"] += 2 if cond is not None and self.guidance != 1.0 and self.outside_interval(t) is not True else 1
        return inner(self, x, t, cond)

    CFGDenoiser.forward = counting
    try:
        prompts = ["a red circle"] if pipe.conditioner.uses_text else None
        labels = [0] if pipe.conditioner.uses_labels else None
        pipe([0], labels=labels, prompts=prompts, options=opts)
    finally:
        CFGDenoiser.forward = inner
    return counts["n"]


if __name__ == "__main__":
    main()
