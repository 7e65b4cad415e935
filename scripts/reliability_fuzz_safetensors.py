"""Fuzz genimage's safetensors loader with N malformed files (default 1,000) and report, per
kind of damage, how many were refused in one line, the slowest file and the memory growth.

Each file goes through ``genimage.utils.weights.load_safetensors``. A file passes when it is
refused with a one-line ``GenimageError`` (or, for a harmless mutation, loads exactly the
original tensors) within 2 s; any other exception, a multi-line message, or a slower file
fails the run. Memory: the process's peak RSS (``ru_maxrss``) before and after each file;
a declared multi-GB shape that was allocated would show as a jump.

Usage:
    python scripts/reliability_fuzz_safetensors.py [--n 1000] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402
from fuzz_safetensors import MUTATIONS, base_file, fuzz_cases  # noqa: E402

from genimage.errors import GenimageError  # noqa: E402
from genimage.utils.weights import load_safetensors  # noqa: E402


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="st_fuzz_"))
    folder.mkdir(parents=True, exist_ok=True)
    base = base_file(folder)
    original = load_safetensors(folder / "base.safetensors")
    rss0 = _rss_mib()
    stats = collections.defaultdict(lambda: collections.Counter())
    slowest = (0.0, "")
    max_growth = 0.0
    failures = []
    for i, (kind, data) in enumerate(fuzz_cases(base, args.n, seed=args.seed)):
        path = folder / f"{i:05d}-{kind}.safetensors"
        path.write_bytes(data)
        before = _rss_mib()
        t0 = time.perf_counter()
        try:
            back = load_safetensors(path)
            same = back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)
            stats[kind]["accepted-identical" if same else "LOADED-DIFFERENT"] += 1
            if not same:
                failures.append(f"{path.name}: loaded different tensors")
        except GenimageError as exc:
            ok = "\n" not in str(exc)
            stats[kind]["refused" if ok else "MULTILINE"] += 1
            if not ok:
                failures.append(f"{path.name}: multi-line message")
        except Exception as exc:  # noqa: BLE001  (what the run is looking for)
            stats[kind]["CRASH"] += 1
            failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
        dt = time.perf_counter() - t0
        max_growth = max(max_growth, _rss_mib() - before)
        if dt > slowest[0]:
            slowest = (dt, path.name)
        if dt > 2.0:
            failures.append(f"{path.name}: took {dt:.2f}s")
    print(f"{args.n} fuzzed files (seed {args.seed}), {len(MUTATIONS)} kinds of damage; files in {folder}")
    print(f"{'kind':24s} {'files':>5s} {'refused':>7s} {'identical':>9s} {'other':>5s}")
    for kind in MUTATIONS:
        c = stats[kind]
        total = sum(c.values())
        other = total - c["refused"] - c["accepted-identical"]
        print(f"{kind:24s} {total:5d} {c['refused']:7d} {c['accepted-identical']:9d} {other:5d}")
    refused = sum(c["refused"] for c in stats.values())
    print(f"refused in one line: {refused}/{args.n}; loaded unchanged: "
          f"{sum(c['accepted-identical'] for c in stats.values())}; failures: {len(failures)}")
    print(f"slowest file: {slowest[0] * 1000:.1f} ms ({slowest[1]}); peak RSS {rss0:.0f} -> {_rss_mib():.0f} MiB, "
          f"largest growth during one file {max_growth:.1f} MiB")
    for f in failures[:20]:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
