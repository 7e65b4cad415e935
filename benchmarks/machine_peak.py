"""Matmul peak of this machine in fp32 and bf16 (the denominators for achieved GFLOP/s).

    python benchmarks/machine_peak.py [--threads 2] [--n 2048]

Reports the median of repeated square matmuls, and which CPU features torch sees.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def matmul_gflops(dtype: torch.dtype, n: int, repeats: int = 7) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genimage.utils.precision import bf16_is_fast

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 fast (AMX/AVX512-BF16): {bf16_is_fast()}, threads {args.threads}")
    fp32 = matmul_gflops(torch.float32, args.n)
    bf16 = matmul_gflops(torch.bfloat16, args.n // 4, repeats=3)  # slow path on CPUs without bf16 units
    print(f"| dtype | matmul GFLOP/s |\n|---|---|\n| fp32 | {fp32:.1f} |\n| bf16 | {bf16:.1f} |")


if __name__ == "__main__":
    main()
