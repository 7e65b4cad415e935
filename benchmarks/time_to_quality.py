"""Time to quality at sampling (issue 20, item 5): images/s at a given quality, genimage's
samplers and distilled models against diffusers' ``DPMSolverMultistepScheduler`` on the same
network, measured side by side in one process.

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --threads 1 --n-digits 1000 --n-shapes 500 \\
        --out benchmarks/results/time_to_quality.json

Both bundled models are flow-matching models on the linear path ``x_t = (1 - t) x0 + t eps``,
so diffusers' DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2) runs them in its
flow mode (``use_flow_sigmas=True``, ``prediction_type="flow_prediction"``: the model output is
``eps - x0``) with its own time grid; the network call is genimage's, with the model's
classifier-free guidance and guidance interval, so only the solver and its grid differ.
diffusers' scheduler is registered as a genimage sampler (``diffusers-dpm``) for this run
only, so both go through the same batching, seeds and decoding.

* digits (8x8, class-conditional, guidance 2, both branches every step): Fréchet distance in
  the bundled digits features against the 1,500 training digits, ``--n-digits`` samples
  (seeds 0..n-1, balanced labels); plus the 2-evaluation ``digits-2step`` consistency model.
* shapes (32 px text-to-image, guidance 3 in t in [0.6, 1]): prompt accuracy on
  ``--n-shapes`` seen + ``--n-shapes`` held-out prompts (:func:`evaluate_prompts`).

images/s is wall time of generation (network, solver, text encoding, decoding) at batch 64 in
fp32 with ``--threads`` threads. Network evaluations (NFE) count both guidance branches.
The backbone's share of the machine's fp32 peak: FLOPs of one forward (torch's
``FlopCounterMode``) over its measured time, against a square fp32 matmul at the same threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def dpm_scheduler(steps: int):
    """diffusers' DPM-Solver++(2M) in flow mode, set to ``steps`` steps."""
    from diffusers import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, use_flow_sigmas=True, flow_shift=1.0,
                                        prediction_type="flow_prediction", algorithm_type="dpmsolver++",
                                        solver_order=2, final_sigmas_type="zero")
    sched.set_timesteps(steps)
    return sched


def diffusers_dpm(model, x: torch.Tensor, timesteps: torch.Tensor, *, cond=None, generator=None, callback=None):
    """diffusers' DPM-Solver++(2M) in flow mode for ``len(timesteps) - 1`` steps on its own
    grid (``timesteps`` only gives the count); ``model`` is a genimage denoiser."""
    sched = dpm_scheduler(len(timesteps) - 1)
    for i, ts in enumerate(sched.timesteps):
        t = float(sched.sigmas[i])
        pred = model(x, torch.tensor(t, dtype=torch.float64), cond)
        x = sched.step((pred.eps - pred.x0).to(x.dtype), ts, x).prev_sample
    return x


def register_diffusers_sampler() -> None:
    from genimage.samplers import NFE_PER_STEP, SAMPLERS

    if "diffusers-dpm" not in SAMPLERS:
        SAMPLERS.register("diffusers-dpm")(diffusers_dpm)
    NFE_PER_STEP["diffusers-dpm"] = 1


def diffusers_times(steps: int) -> list[float]:
    """The path times at which :func:`diffusers_dpm` calls the network."""
    return [float(v) for v in dpm_scheduler(steps).sigmas[:-1]]


def nfe(opts, times: list[float]) -> int:
    """Network evaluations per image: 2 per step inside the guidance interval, else 1."""
    if opts.guidance == 1.0:
        return len(times)
    lo, hi = opts.guidance_interval or (0.0, 1.0)
    return sum(2 if lo <= t <= hi else 1 for t in times)


def genimage_times(opts, path: str = "linear") -> list[float]:
    from genimage.samplers import make_schedule

    from genimage.paths import build_path

    return [float(t) for t in make_schedule(opts.schedule, build_path(path), opts.steps)[:-1]]


def backbone_share(denoiser, config, cond: dict, batch: int, peak: float, repeats: int = 7) -> dict:
    """FLOPs and time of one backbone forward at ``batch`` (the cond+uncond batch a guided step runs)."""
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(config.latent_shape or (config.channels, config.image_size, config.image_size))
    x = torch.randn(batch, *shape)
    with torch.no_grad():
        denoiser(x, 0.7, cond)
        with FlopCounterMode(display=False) as fc:
            denoiser(x, 0.7, cond)
        flops = fc.get_total_flops()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            denoiser(x, 0.7, cond)
            ts.append(time.perf_counter() - t0)
    sec = statistics.median(ts)
    return {"batch": batch, "gflop": round(flops / 1e9, 3), "ms": round(sec * 1e3, 2),
            "gflops": round(flops / sec / 1e9, 1), "share_of_peak": round(flops / sec / 1e9 / peak, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-digits", type=int, default=1000)
    ap.add_argument("--n-shapes", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    register_diffusers_sampler()

    from genimage.data.builtin import load_builtin
    from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples
    from genimage.families.io import load_generator
    from genimage.metrics.features import load_feature_net
    from genimage.metrics.frechet import frechet_distance
    from genimage.metrics.prompt_accuracy import evaluate_prompts
    from genimage.generation import SamplingOptions
    from genimage.pipeline import Pipeline

    from machine_peak import matmul_gflops  # benchmarks/machine_peak.py, beside this script

    peak = matmul_gflops(torch.float32, 1024, repeats=9)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch": torch.__version__, "fp32_matmul_gflops": round(peak, 1)},
              "digits": [], "shapes": []}
    print(json.dumps(result["machine"]), flush=True)

    # digits: FD against the training digits
    net = load_feature_net("digits")
    ref = net.features(dataset_images(load_builtin("digits", split="train")))
    teacher = load_generator("digits")
    cond = conditions_for(teacher.config, args.n_digits)

    def digits_row(name, lg, sampler, steps, times_fn):
        opts = dataclasses.replace(SamplingOptions.defaults(lg.config), sampler=sampler, steps=steps, bf16=False)
        draw_samples(lg.model, 64, 10_000, conditions_for(lg.config, 64), options=opts)  # warm-up
        t0 = time.perf_counter()
        images, _ = draw_samples(lg.model, args.n_digits, 0, cond, options=opts, batch_size=64)
        secs = time.perf_counter() - t0
        row = {"model": name, "sampler": sampler, "steps": steps, "nfe": nfe(opts, times_fn(opts)),
               "fd": round(frechet_distance(net.features(images), ref), 2),
               "images_per_s": round(args.n_digits / secs, 1)}
        result["digits"].append(row)
        print(json.dumps(row), flush=True)

    for sampler, steps in (("euler", 16), ("dpmpp_2m", 10), ("dpmpp_2m", 20)):
        digits_row("digits", teacher, sampler, steps, genimage_times)
    for steps in (10, 20):
        digits_row("digits", teacher, "diffusers-dpm", steps, lambda o: diffusers_times(o.steps))
    fast = load_generator("digits-2step")
    digits_row("digits-2step", fast, fast.config.sampler, fast.config.steps, genimage_times)

    # shapes: prompt accuracy
    pipe = Pipeline.from_pretrained("shapes")
    for sampler, steps in (("euler", 8), ("dpmpp_2m", 10), ("diffusers-dpm", 10), ("diffusers-dpm", 20)):
        opts = pipe.options(sampler=sampler, steps=steps, bf16=False)
        pipe(list(range(64)), prompts=["a red circle"] * 64, options=opts)  # warm-up
        rep = evaluate_prompts(pipe, n=args.n_shapes, options=opts, batch_size=64)
        times = diffusers_times(steps) if sampler == "diffusers-dpm" else genimage_times(opts)
        row = {"model": "shapes", "sampler": sampler, "steps": steps, "nfe": nfe(opts, times),
               "seen": round(rep["seen"]["overall"], 3), "held_out": round(rep["held_out"]["overall"], 3),
               "position_seen": round(rep["seen"]["position"], 3),
               "position_held_out": round(rep["held_out"]["position"], 3),
               "images_per_s": round(rep["images_per_s"], 1)}
        result["shapes"].append(row)
        print(json.dumps(row), flush=True)

    result["backbone"] = {
        "digits": backbone_share(teacher.model.denoiser, teacher.config,
                                 teacher.model.conditioner(labels=[i % 10 for i in range(128)]), 128, peak),
        "shapes": backbone_share(pipe.loaded.denoiser, pipe.config,
                                 pipe.conditioner(captions=["a red circle above a blue square"] * 128), 128, peak),
    }
    print(json.dumps(result["backbone"]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
