"""Evaluation goals on a digits model (issue "Evaluation", item 5), measured side by side.

* DPM-Solver++(2M) at 10 network evaluations vs 100-evaluation DDIM and 10-evaluation DDIM;
* a 2-step consistency model vs 50-step DDIM on its teacher.

Network evaluations count both branches of classifier-free guidance, so with the digits
model's guidance 2.0, 10 evaluations are 5 sampler steps. The same comparison without guidance
(1 evaluation per step) is printed too. Fréchet distance in the shipped digits features
against the 1,500 training digits; n samples with seeds first..first+n-1 (``--first-seed``,
default 0), balanced labels.

    python benchmarks/sampler_goals.py --teacher digits --consistency runs/fam_cd -n 1000

A multistep consistency model (``segments`` S > 1, Heek et al. 2024) is measured with its own
sampler (S deterministic DDIM steps on the segment boundaries) as well as Algorithm 1's.

``--renoise-time T`` adds a 2-step consistency row that re-noises to path time ``T`` instead of
the schedule's 0.5 (the sampler's ``renoise_times``, Song et al. 2023 Alg. 1; pick ``T`` on
other seeds than the ones measured here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from genimage.data.builtin import load_builtin
from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples
from genimage.families.consistency import consistency_settings
from genimage.families.io import load_generator
from genimage.generation import SamplingOptions
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--teacher", default="digits")
    ap.add_argument("--consistency", default=None)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + n - 1")
    ap.add_argument("--renoise-time", type=float, default=None,
                    help="also measure the 2-step consistency model re-noising to this time (default row: 0.5)")
    ap.add_argument("--teacher-rows", default=None,
                    help="comma list of SAMPLER:STEPS teacher rows instead of the goal's set, e.g. ddim:50")
    ap.add_argument("--out", default=None)
    ap.add_argument("--settings", default="guided,unguided",
                    help="comma list: guided (the model's guidance, 2 evaluations per step), unguided (guidance 1)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    net = load_feature_net("digits")
    data = load_builtin("digits", split="train")
    ref = net.features(dataset_images(data))
    teacher = load_generator(args.teacher)
    cond = conditions_for(teacher.config, args.n)
    rows = []

    def run(name, lg, sampler, steps, guidance, extra=None):
        opts = dataclasses.replace(SamplingOptions.defaults(lg.config), sampler=sampler, steps=steps, guidance=guidance)
        if extra:
            opts.extra = {**opts.extra, **extra}
        t0 = time.perf_counter()
        images, _ = draw_samples(lg.model, args.n, args.first_seed, cond, options=opts)
        secs = time.perf_counter() - t0
        guided = guidance != 1.0
        nfe = steps * (2 if guided else 1)
        row = {"model": name, "sampler": sampler, "steps": steps, "guidance": guidance, "nfe": nfe,
               "fd": frechet_distance(net.features(images), ref), "seconds": round(secs, 1), **(extra or {})}
        rows.append(row)
        print(json.dumps(row), flush=True)

    g = teacher.config.guidance
    chosen = {x for x in args.settings.split(",") if x}
    settings = [(g, 2)] * ("guided" in chosen) + [(1.0, 1)] * ("unguided" in chosen)
    for guidance, per in settings:
        goal_rows = [("ddim", 100 // per), ("dpmpp_2m", 10 // per), ("ddim", 10 // per), ("ddim", 50)]
        if args.teacher_rows is not None:
            goal_rows = [(r.split(":")[0], int(r.split(":")[1])) for r in args.teacher_rows.split(",") if r]
        for sampler, steps in dict.fromkeys(goal_rows):
            run("teacher", teacher, sampler, steps, guidance)
    if args.consistency:
        cm = load_generator(args.consistency)
        segments = consistency_settings(cm.config.family_config).segments
        if segments > 1:  # multistep consistency: its own deterministic steps on the segment boundaries
            run(f"consistency, {segments} segments", cm, cm.config.sampler, cm.config.steps, 1.0)
        for steps in (1, 2):
            run("consistency", cm, "consistency", steps, 1.0)
        if args.renoise_time is not None:
            run("consistency", cm, "consistency", 2, 1.0, {"renoise_times": args.renoise_time})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
