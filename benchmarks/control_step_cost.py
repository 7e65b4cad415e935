"""Cost of one training step of each control variant on the bundled shapes model (one process,
alternating, median of --reps): forward + backward through the frozen base, at --batch-size.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/control_step_cost.py --batch-size 64 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from genimage.models.control import ControlConfig, build_control, controlled_denoiser
    from genimage.models.io import load_model

    base = load_model("shapes")
    b = args.batch_size
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(b, 4, 8, 8, generator=g), torch.rand(b, generator=g)
    hint = (torch.rand(b, 1, 32, 32, generator=g) > 0.9).float()
    cond = {"text": torch.randn(b, 16, 768, generator=g), "text_mask": torch.ones(b, 16, dtype=torch.bool)}
    modules = {}
    for variant in ("controlnet", "adapter"):
        cfg = ControlConfig(kinds=["edges"], variant=variant, base_backbone_config=dict(base.config.backbone_config))
        modules[variant] = build_control(cfg).train()
    times = {v: [] for v in modules}
    for _ in range(args.reps + 1):  # the first round warms up
        for variant, module in modules.items():
            t0 = time.perf_counter()
            out = controlled_denoiser(base.denoiser, module, hint).raw(x, t, cond)
            out.pow(2).mean().backward()
            times[variant].append(time.perf_counter() - t0)
    for variant, module in modules.items():
        med = statistics.median(times[variant][1:])
        print(f"{variant}: {sum(p.numel() for p in module.parameters()):,} parameters, "
              f"{med:.3f} s per forward+backward of {b} (median of {args.reps})")
    print(f"ratio controlnet / adapter: {statistics.median(times['controlnet'][1:]) / statistics.median(times['adapter'][1:]):.2f}")


if __name__ == "__main__":
    main()
