"""kill -9 suite: for each family, a small ``genimage train`` run on digits (tiny preset,
a checkpoint every 2 steps) is killed with SIGKILL N times, every other time while a
checkpoint is being written (the ``.tmp-step-*`` folder exists), the others at a random
moment, and resumed with ``--resume`` each time. Checked after every kill: the latest
checkpoint (if one exists yet) loads completely; after the next start: the killed process's
temporary files/folders are gone; at the end: the final weights, optimizer state and loss
history equal an uninterrupted run's bit for bit, and no more than ``--keep-checkpoints``
checkpoints remain. Runs with --keep-checkpoints 2 and 1 alternate between families.

Usage:
    nice python scripts/reliability_kill.py [--kills 20] [--families diffusion,gan,...] [--steps 40]

Families (tests/kill_harness.py FAMILY_ARGS): diffusion (flow matching), gan, vae, normalizing-flow,
autoencoder, consistency (consistency training), consistency-distill and reflow (teacher: the
bundled digits model).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from kill_harness import FAMILY_ARGS, run_campaign  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs per family (half of them inside a save)")
    ap.add_argument("--families", default=",".join(FAMILY_ARGS), help=f"comma-separated, of {', '.join(FAMILY_ARGS)}")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_suite_"))
    results = []
    for i, family in enumerate(args.families.split(",")):
        keep = 1 if i % 2 else 2
        t0 = time.time()
        c = run_campaign(family, work / family, args.kills, args.steps, keep=keep, seed=args.seed + i,
                         log=lambda m: print(m, flush=True))
        results.append(c)
        print(f"== {family}: {c.kills} kills ({c.in_save} inside a save), {time.time() - t0:.0f}s, "
              f"failures: {c.failures or 'none'}", flush=True)
    print(f"\n{'family':18s} {'keep':>4s} {'kills':>5s} {'in save':>7s} {'valid':>5s} {'before 1st':>10s} "
          f"{'cleaned':>7s} {'left':>4s} {'bit-identical':>13s}")
    for c in results:
        print(f"{c.family:18s} {c.keep:4d} {c.kills:5d} {c.in_save:7d} {c.valid_after_kill:5d} "
              f"{c.no_checkpoint_yet:10d} {c.stale_cleaned:7d} {c.stale_left:4d} {str(c.identical):>13s}")
    total = sum(c.kills for c in results)
    print(f"total: {total} kills, {sum(c.in_save for c in results)} inside a save; "
          f"{sum(c.identical for c in results)}/{len(results)} families bit-identical; work folder {work}")
    return 0 if all(c.identical and not c.failures for c in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
