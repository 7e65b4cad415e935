"""How good is the trajectory a consistency student is distilled from? (issue "Evaluation", item 5)

Consistency distillation (Song et al. 2023, Alg. 2) teaches the student the teacher's ODE
solution *on the training grid*: one teacher step per grid interval. A student that matched it
perfectly would sample like the teacher walking that grid, so the teacher's Fréchet distance on
the grid bounds what distillation can reach. This script walks the digits teacher (no
guidance, the same one-step solver as training) down each grid of
:func:`genimage.families.consistency.discretisation` and prints the FD of the result, in the
shipped digits features against the 1,500 training digits, n samples with seeds 0..n-1 and
balanced labels (as ``benchmarks/sampler_goals.py``).

    python benchmarks/distillation_grid_ceiling.py -n 1000 --grids karras:18,uniform:18,uniform:36
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genimage.conditioning.conditioner import Conditioner
from genimage.data.builtin import load_builtin
from genimage.evaluation.sampling import conditions_for, dataset_images
from genimage.families.consistency import discretisation, with_boundaries
from genimage.families.teacher import load_teacher, student_config_from_teacher
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance
from genimage.samplers.noise import generators_for_seeds, randn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="digits")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--grids", default="karras:18,uniform:18,karras:36,uniform:36",
                    help="comma list of GRID:INTERVALS (grid karras or uniform)")
    ap.add_argument("--segments", type=int, default=1, help="insert these segment boundaries into each grid")
    ap.add_argument("--solver", default="euler", help="teacher step: euler or heun")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    net = load_feature_net("digits")
    data = load_builtin("digits", split="train")
    ref = net.features(dataset_images(data))
    config = student_config_from_teacher(args.teacher, "consistency", {"teacher_guidance": 1})
    teacher = load_teacher(config, torch.device("cpu"))
    conditioner = Conditioner(config)
    labels = conditions_for(config, args.n)
    shape = (config.channels, config.image_size, config.image_size)
    for spec in args.grids.split(","):
        grid, intervals = spec.split(":")
        times = with_boundaries(discretisation(teacher.model.path, int(intervals), grid), args.segments)
        t0 = time.perf_counter()
        images = []
        for start in range(0, args.n, 250):
            seeds = range(start, min(start + 250, args.n))
            x = randn((len(seeds), *shape), generators_for_seeds(seeds))
            cond = conditioner(labels=labels[start:start + len(seeds)] if labels else None, batch=len(seeds))
            images.append(teacher.walk_grid(x, times, cond, args.solver).clamp(-1, 1))
        fd = frechet_distance(net.features(torch.cat(images)), ref)
        print(json.dumps({"grid": grid, "intervals": int(intervals), "segments": args.segments,
                          "teacher_steps": len(times) - 1, "solver": args.solver, "fd": fd,
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
