"""Which half of the trajectory does a 2-segment consistency student get wrong? (issue
"Evaluation", item 5)

A multistep consistency model with ``segments = 2`` (Heek et al. 2024) samples in two
deterministic steps, t = 1 -> 0.5 -> 0. This script swaps each of the two student steps for
the teacher walking that segment on the distillation grid (its training solver and
``teacher_substeps`` per interval) and prints the Fréchet distance of the four combinations,
in the shipped digits features against the 1,500 training digits (seeds 0..n-1, labels
i mod 10, as ``benchmarks/sampler_goals.py``):

* teacher + teacher: the grid's ceiling (``benchmarks/distillation_grid_ceiling.py``);
* student + teacher: the error of the student's first (high-noise) step alone;
* teacher + student: the error of its second (low-noise) step alone;
* student + student: the student's own 2-step sampling.

    python benchmarks/consistency_segment_errors.py runs/ft_u18_lo -n 5000
"""

from __future__ import annotations

import argparse
import json

import torch

from genimage.conditioning.conditioner import Conditioner
from genimage.data.builtin import load_builtin
from genimage.evaluation.sampling import conditions_for, dataset_images
from genimage.families.consistency import consistency_settings, discretisation, with_boundaries
from genimage.families.teacher import load_teacher
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance
from genimage.models.io import load_model
from genimage.samplers.noise import generators_for_seeds, randn


def student_step(denoiser, x: torch.Tensor, t: float, b: float, cond) -> torch.Tensor:
    """The student's jump from ``t`` to its segment start ``b``: a DDIM step with its ``x0``."""
    x0 = denoiser(x, torch.full((len(x),), t, dtype=torch.float64), cond).x0
    return (t - b) / t * x0 + b / t * x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("student", help="a 2-segment consistency model, run or checkpoint folder")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    student = load_model(args.student)
    config = student.config
    settings = consistency_settings(config.family_config)
    if config.family != "consistency" or settings.segments != 2 or settings.mode != "distillation":
        raise SystemExit(f"{args.student} is not a 2-segment distilled consistency model")
    teacher = load_teacher(config, torch.device("cpu"))
    times = with_boundaries(discretisation(teacher.model.path, int(config.family_config.get("intervals", 18)),
                                           settings.grid), 2)
    upper, lower = times[times >= 0.5], times[times <= 0.5]
    net = load_feature_net("digits")
    ref = net.features(dataset_images(load_builtin("digits", split="train")))
    conditioner = Conditioner(config)
    labels = conditions_for(config, args.n)
    shape = (config.channels, config.image_size, config.image_size)
    solver, substeps = settings.teacher_solver, settings.teacher_substeps
    halves = {
        "teacher": (lambda x, c: teacher.walk_grid(x, upper, c, solver, substeps),
                    lambda x, c: teacher.walk_grid(x, lower, c, solver, substeps)),
        "student": (lambda x, c: student_step(student.denoiser, x, 1.0, 0.5, c),
                    lambda x, c: student_step(student.denoiser, x, 0.5, 0.0, c)),
    }
    for first in ("teacher", "student"):
        for second in ("teacher", "student"):
            images = []
            for start in range(0, args.n, 250):
                seeds = range(args.first_seed + start, args.first_seed + min(start + 250, args.n))
                x = randn((len(seeds), *shape), generators_for_seeds(seeds))
                cond = conditioner(labels=labels[start:start + len(seeds)] if labels else None, batch=len(seeds))
                images.append(halves[second][1](halves[first][0](x, cond), cond).clamp(-1, 1))
            fd = frechet_distance(net.features(torch.cat(images)), ref)
            print(json.dumps({"first_half": first, "second_half": second, "n": args.n, "fd": round(fd, 4)}),
                  flush=True)


if __name__ == "__main__":
    main()
