"""Bad images at scale: N good files mixed with N bad ones (tests/bad_images.py: the kinds
the loader knows and a few it was not written for), scanned by ImageFolderDataset and every
usable item read. Reports, per kind, how the files were handled, the wall time and the peak
RSS. Exit 1 unless every good file is used, every known-bad one is reported with its
reason, and nothing raised.

Usage:
    nice python scripts/reliability_bad_images.py [--n 500]
"""

from __future__ import annotations

import argparse
import collections
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_images import KNOWN_BAD, make_mix  # noqa: E402

from genimage.data.folder import ImageFolderDataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bad_images_"))
    try:
        good, bad = make_mix(work / "mix", args.n, args.n, seed=args.seed)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        ds = ImageFolderDataset(work / "mix", image_size=32)
        items = [ds[i] for i in range(len(ds))]
        seconds = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        pass
    used = {r.path for r in ds.records}
    reported = {b.path: b.reason for b in ds.bad_files}
    table = collections.defaultdict(collections.Counter)
    failures = []
    for path, kind in bad.items():
        outcome = f"reported ({reported[path]})" if path in reported else "used" if path in used else "LOST"
        table[kind][outcome] += 1
        if kind in KNOWN_BAD and reported.get(path) != KNOWN_BAD[kind]:
            failures.append(f"{path} ({kind}): {outcome}")
        if outcome == "LOST":
            failures.append(f"{path} ({kind}) neither used nor reported")
    good_used = len(good & used)
    print(f"{args.n} good + {args.n} bad files; scan + reading {len(items)} items: {seconds:.1f}s; "
          f"peak RSS {rss0:.0f} -> {rss1:.0f} MiB")
    print(f"good files used: {good_used}/{len(good)}")
    for kind, c in table.items():
        print(f"  {kind:14s} {sum(c.values()):4d}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    if good_used != len(good):
        failures.append(f"{len(good) - good_used} good files not used")
    for f in failures[:20]:
        print("FAIL", f)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
