"""genimage's DDIM sampler against diffusers' own DDIMPipeline on the same UNet2DModel,
the same number of steps and the same batch, measured in one process, interleaved.

    python benchmarks/ddim_vs_diffusers.py [--steps 20] [--batch 16] [--repeats 5]

Prints a markdown table (medians) for fp32 and bf16 autocast. The two schedules are not
numerically identical (diffusers uses DDPM's discrete linear betas, genimage the continuous
VP-linear path), so this compares the cost of sampling, not the pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import DDIMPipeline, DDIMScheduler

    from genimage.conditioning.conditioner import Conditioner
    from genimage.generation import SamplingOptions, generate
    from genimage.models.config import ModelConfig
    from genimage.models.io import build_denoiser
    from genimage.models.presets import backbone_config

    mc = ModelConfig(backbone="unet", backbone_config=backbone_config("unet", "small", image_size=32, channels=3),
                     objective="ddpm-eps", path="vp-linear", prediction="eps", image_size=32, channels=3)
    torch.manual_seed(0)
    den = build_denoiser(mc).eval()
    unet = den.network.diffusers_model
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))
    pipe.set_progress_bar_config(disable=True)
    cond = Conditioner(mc)
    n_params = sum(p.numel() for p in unet.parameters())

    def run_genimage(bf16: bool) -> float:
        opts = SamplingOptions("ddim", "uniform", args.steps, 1.0, bf16=bf16)
        t0 = time.perf_counter()
        generate(den, mc, cond, seeds=list(range(args.batch)), options=opts, batch_size=args.batch)
        return time.perf_counter() - t0

    def run_diffusers(bf16: bool) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        t0 = time.perf_counter()
        with ctx, torch.no_grad():
            pipe(batch_size=args.batch, num_inference_steps=args.steps, eta=0.0, output_type="np",
                 generator=torch.Generator().manual_seed(0))
        return time.perf_counter() - t0

    print(f"UNet2DModel {n_params / 1e6:.2f}M params, 32x32x3, batch {args.batch}, {args.steps} DDIM steps, "
          f"{args.threads} threads, median of {args.repeats}\n")
    from genimage.utils.precision import bf16_is_fast

    precisions = (False, True) if bf16_is_fast() else (False,)
    if not bf16_is_fast():
        print("(bf16 skipped: this CPU has no AMX/AVX512-BF16, where bf16 autocast is many times slower)\n")
    print("| precision | genimage DDIM (s) | diffusers DDIMPipeline (s) | genimage / diffusers | genimage images/s |")
    print("|---|---|---|---|---|")
    for bf16 in precisions:
        run_genimage(bf16), run_diffusers(bf16)  # warm-up
        g, d = [], []
        for _ in range(args.repeats):
            g.append(run_genimage(bf16))
            d.append(run_diffusers(bf16))
        gm, dm = statistics.median(g), statistics.median(d)
        print(f"| {'bf16' if bf16 else 'fp32'} | {gm:.3f} | {dm:.3f} | {gm / dm:.3f} | {args.batch / gm:.1f} |")


if __name__ == "__main__":
    main()
