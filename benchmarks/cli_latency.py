"""Whole-command wall time of the ``genimage`` CLI: help texts, a one-image generate, an edit.

Each command runs ``--repeat`` times as a fresh process (``python -m genimage.cli.main ...``,
what the console script runs); the report gives the median and the minimum wall time. With
several ``--src`` folders (e.g. the main checkout's ``src`` and a worktree's) the runs are
interleaved command by command, so both trees see the same machine load, and the last
column is the ratio of the medians (first tree / last tree).

Example (the numbers in BENCHMARKS.md, "CLI latency")::

    OMP_NUM_THREADS=1 python benchmarks/cli_latency.py --src /work/main/src --src src --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "train --help": ["train", "--help"],
    "edit --help": ["edit", "--help"],
    "generate (shapes, 1 image)": ["generate", "a red circle", "-o", "{tmp}/a.png"],
    "edit (shapes, img2img)": ["edit", "{tmp}/input.png", "-o", "{tmp}/e.png"],
    "edit (shapes, inpaint)": ["edit", "{tmp}/input.png", "--mask", "{tmp}/mask.png", "-o", "{tmp}/m.png"],
}


def _run(src: str, args: list[str], tmp: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one command in a fresh process."""
    # byte-code is cached (as an installed package has it), in a folder of its own per tree
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()),
           "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache" / str(abs(hash(src))))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "genimage.cli.main", *[a.format(tmp=tmp) for a in args]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _inputs(tmp: str) -> None:
    """A 32x32 RGB input and a mask (right half regenerated)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (32, 32), (240, 240, 240))
    ImageDraw.Draw(img).ellipse((6, 6, 26, 26), fill=(200, 30, 30))
    img.save(Path(tmp) / "input.png")
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((16, 0, 31, 31), fill=255)
    mask.save(Path(tmp) / "mask.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", action="append", help="Source folder put first on PYTHONPATH (repeatable)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", action="append", help="Run only commands whose name contains this (repeatable)")
    args = ap.parse_args()
    srcs = args.src or ["src"]
    names = [n for n in COMMANDS if not args.only or any(o in n for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        _inputs(tmp)
        for src in srcs:  # not timed: writes the byte-code caches
            _run(src, COMMANDS["edit --help"], tmp)
        times = {(n, s): [] for n in names for s in srcs}
        for name in names:
            for _ in range(args.repeat):
                for src in srcs:
                    times[name, src].append(_run(src, COMMANDS[name], tmp))
    head = " | ".join(f"{s}: wall median (min), CPU median s" for s in srcs)
    print(f"| command | {head} |" + (" wall ratio |" if len(srcs) > 1 else ""))
    print("|---|" + "---|" * len(srcs) + ("---|" if len(srcs) > 1 else ""))
    for name in names:
        meds = [statistics.median(w for w, _ in times[name, s]) for s in srcs]
        cells = " | ".join(f"{m:.2f} ({min(w for w, _ in times[name, s]):.2f}), "
                           f"{statistics.median(c for _, c in times[name, s]):.2f}" for m, s in zip(meds, srcs))
        ratio = f" {meds[0] / meds[-1]:.1f}x |" if len(srcs) > 1 else ""
        print(f"| `genimage {' '.join(COMMANDS[name]).replace('{tmp}/', '')}` | {cells} |{ratio}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"({args.repeat} runs each, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs visible)")


if __name__ == "__main__":
    main()
