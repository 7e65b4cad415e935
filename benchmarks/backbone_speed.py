"""Training and inference throughput of the genimage backbones, fp32 vs bf16 autocast, on CPU.

For each backbone at a realistic 32 px RGB, text-conditional (384-d, 16 tokens),
class-free configuration this measures

* training: images/s of one forward + backward + AdamW step at batch 64,
* inference: images/s of one network evaluation at batch 64 under ``torch.no_grad()``,

in fp32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, reporting medians of
several repeats and the achieved GFLOP/s (FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on the same step) against matmul peaks.
bf16 runs only where the CPU has a fast bf16 matmul (AVX512-BF16 / AMX): without one,
PyTorch falls back to reference kernels that are ~100x slower than fp32, and a single
bf16 training step would take minutes. A short second table measures what the
batch-invariance measures in the backbones cost.

Usage::

    python benchmarks/backbone_speed.py [--threads 2] [--batch 64] [--repeats 3] [--bf16 auto|on|off]
        [--models dit/2,dit/4,unet]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from genimage.models.backbones import build_backbone

NOMINAL_PEAK = {"fp32": 230.0, "bf16": 1370.0}  # GFLOP/s, 2 threads, the AMX machines of ARCHITECTURE.md
TEXT = dict(text_dim=384, max_text_len=16)
CONFIGS = {
    "dit/2": ("dit", dict(patch_size=2, hidden=256, depth=6, heads=4, **TEXT)),
    "dit/4": ("dit", dict(patch_size=4, hidden=256, depth=6, heads=4, **TEXT)),
    "unet": ("unet", dict(block_out_channels=(64, 128, 128), layers_per_block=1, **TEXT)),
}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def matmul_peak(dtype: torch.dtype, n: int = 1024, budget_s: float = 1.5) -> float:
    """Best observed GFLOP/s of an n x n matmul within about ``budget_s`` seconds."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            return 2 * n**3 / best / 1e9


def make_batch(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    c_noise = torch.rand(batch, generator=g) * 1000
    lengths = torch.randint(1, 17, (batch, 1), generator=g)
    lengths[::10] = 0  # ~10% dropped captions, as in CFG training
    cond = {"text": torch.randn(batch, 16, 384, generator=g), "text_mask": torch.arange(16)[None] < lengths}
    return x, c_noise, cond


def timed(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Run ``fn`` once counting FLOPs (also the warm-up), then ``repeats`` timed runs -> (flops, median s)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return counter.get_total_flops(), statistics.median(times)


def bench_model(key: str, dtypes: list[str], batch: int, repeats: int) -> list[dict]:
    name, cfg = CONFIGS[key]
    torch.manual_seed(0)
    model = build_backbone(name, cfg)
    params = sum(p.numel() for p in model.parameters())
    x, c_noise, cond = make_batch(batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = []
    for dt in dtypes:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dt == "bf16")

        def train_step() -> None:
            with autocast:
                loss = (model(x, c_noise, cond).float() - x).square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def infer() -> None:
            with torch.no_grad(), autocast:
                model(x, c_noise, cond)

        model.train()
        train_flops, train_s = timed(train_step, repeats)
        model.eval()
        infer_flops, infer_s = timed(infer, repeats)
        for mode, flops, sec in (("train", train_flops, train_s), ("infer", infer_flops, infer_s)):
            rows.append(dict(model=key, params=params, dtype=dt, mode=mode, img_s=batch / sec, sec=sec,
                             gflop=flops / 1e9, gflops=flops / sec / 1e9))
        print(f"  done {key} {dt}: train {train_s:.2f} s/step, infer {infer_s:.2f} s/eval", flush=True)
    return rows


def bf16_spot_check(keys: list[str], batch: int = 4) -> list[tuple[str, float, float]]:
    """One small-batch inference in fp32 and bf16 per model: how much slower bf16 is on this CPU."""
    out = []
    for key in keys:
        name, cfg = CONFIGS[key]
        model = build_backbone(name, cfg).eval()
        x, c_noise, cond = make_batch(batch)
        secs = []
        for bf16 in (False, True):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                secs.append(timed(lambda: model(x, c_noise, cond), 1)[1])
        out.append((f"{key}, batch {batch} eval", secs[0], secs[1]))
    return out


def invariance_costs(repeats: int) -> list[tuple[str, float, float]]:
    """Time of the batch-invariance measures vs the same computation without them."""
    import genimage.nn.attention as attn_mod

    out = []
    # 1. UNet at batch 1 runs the sample twice (oneDNN conv); compare with the bare diffusers model.
    unet = build_backbone("unet", CONFIGS["unet"][1]).eval()
    x, c_noise, cond = make_batch(1)
    text = cond["text"]
    text, mask = unet.null_text(text, cond["text_mask"])
    with torch.no_grad():
        _, with_fix = timed(lambda: unet(x, c_noise, cond), repeats)
        _, without = timed(
            lambda: unet.diffusers_model(x, c_noise, encoder_hidden_states=text, encoder_attention_mask=mask), repeats
        )
    out.append(("unet, batch 1 eval (runs batch 2)", with_fix, without))
    # 2. DiT attention: contiguous q/k/v copies (and query padding below 16 tokens).
    dit = build_backbone("dit", CONFIGS["dit/4"][1]).eval()
    x, c_noise, cond = make_batch(64)
    original = attn_mod.attention

    def plain(q, k, v, key_mask=None):
        s = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).float()
        if key_mask is not None:
            s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return s.softmax(-1).to(v.dtype) @ v

    with torch.no_grad():
        _, with_fix = timed(lambda: dit(x, c_noise, cond), repeats)
        attn_mod.attention = plain
        try:
            _, without = timed(lambda: dit(x, c_noise, cond), repeats)
        finally:
            attn_mod.attention = original
    out.append(("dit/4, batch 64 eval, contiguous attention operands", with_fix, without))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="dit/4,unet",
                        help=f"comma list of {list(CONFIGS)}; dit/2 adds ~2.5 min at 2 threads")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                        help="auto: only if bf16 matmul is at least as fast as fp32 here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    flags = cpu_flags()
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16, n=256, budget_s=0.5)}
    fast_bf16 = {"amx_bf16", "avx512_bf16"} & flags
    print(f"# backbone speed: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, batch {args.batch}, median of {args.repeats}")
    print(f"# load average {os.getloadavg()[0]:.1f}; bf16 CPU flags: {sorted(fast_bf16) or 'none'}; "
          f"measured matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    dtypes = ["fp32"]
    if args.bf16 == "on" or (args.bf16 == "auto" and peak["bf16"] >= peak["fp32"]):
        dtypes.append("bf16")
    else:
        print("# bf16 skipped at full batch: bf16 matmul is slower than fp32 on this CPU (no AMX/AVX512-BF16); "
              "see the spot check below, or force with --bf16 on")
    rows = []
    for key in args.models.split(","):
        rows += bench_model(key, dtypes, args.batch, args.repeats)
    print()
    print("| model | params | dtype | mode | img/s | s/iter | GFLOP/iter | GFLOP/s | % measured peak | % nominal peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['dtype']} | {r['mode']} | {r['img_s']:.1f} | "
              f"{r['sec']:.2f} | {r['gflop']:.0f} | {r['gflops']:.1f} | {100 * r['gflops'] / peak[r['dtype']]:.0f}% | "
              f"{100 * r['gflops'] / NOMINAL_PEAK[r['dtype']]:.0f}% |")
    if "bf16" not in dtypes:
        print()
        print("| bf16 spot check | fp32 (s) | bf16 autocast (s) | bf16 / fp32 |")
        print("|---|---|---|---|")
        for label, fp32_s, bf16_s in bf16_spot_check(args.models.split(",")):
            print(f"| {label} | {fp32_s:.3f} | {bf16_s:.3f} | {bf16_s / fp32_s:.1f}x |")
    print()
    print("| batch-invariance measure | with (s) | without (s) | overhead |")
    print("|---|---|---|---|")
    for label, with_fix, without in invariance_costs(args.repeats):
        print(f"| {label} | {with_fix:.4f} | {without:.4f} | {100 * (with_fix / without - 1):+.0f}% |")
    print(f"\n# total {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
