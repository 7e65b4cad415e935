"""Divergence sweep: train the digits tiny preset with learning rates from sane to absurd and
report, for each, the exit code, the error line, the checkpoint left as ``latest`` and
whether ``genimage sample`` on the run writes images or refuses in one line.

A diverging run must end with exit 2 and a "training diverged" line, never exit 0 with a
garbage ``latest``; whatever ``latest`` remains must sample finite images.

Usage:
    nice python scripts/reliability_divergence.py [--lrs 3e-4,1,100,1e6,1e12] [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from genimage.training.checkpoint import find_latest_checkpoint


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "genimage.cli.main", *args], env=_env(), capture_output=True,
                          text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", default="3e-4,1,100,1e6,1e12")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="diverge_"))
    bad = 0
    print(f"{'lr':>8s} {'exit':>4s} {'skipped':>7s} {'latest':>14s} {'sample':>12s}  error")
    for lr in args.lrs.split(","):
        out = work / f"lr{lr}"
        res = _cli("train", "--data", "builtin:digits", "--preset", "tiny", "--lr", lr, "--warmup-steps", "5",
                   "--steps", str(args.steps), "--checkpoint-every", "10", "--batch-size", "8", "--no-progress",
                   "--out", str(out))
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        skipped = sum("skipped" in ln for ln in res.stderr.splitlines())
        latest = find_latest_checkpoint(out / "checkpoints")
        sample = "-"
        if latest is not None:
            s = _cli("sample", "--model", str(out), "-n", "4", "--out-dir", str(out / "png"))
            sample = "wrote 4" if s.returncode == 0 else f"exit {s.returncode}"
        diverged = res.returncode == 2 and errors and "training diverged" in errors[0]
        if res.returncode == 0 and latest is not None and sample != "wrote 4":
            bad += 1
        if res.returncode not in (0, 2) or "Traceback" in res.stderr:
            bad += 1
        print(f"{lr:>8s} {res.returncode:4d} {skipped:7d} {latest.name if latest else 'none':>14s} {sample:>12s}  "
              f"{(errors[0][:150] if errors else '')}{' (diverged)' if diverged else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
