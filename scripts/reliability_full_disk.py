"""A real full disk: train and sample into a small tmpfs (needs root to mount it).

1. ``genimage train`` (digits, tiny, a checkpoint every 2 steps, keep 100) into a tmpfs of
   ``--size-kib`` fills it mid-run: the process must exit 2 with exactly one ``error:`` line
   that names the checkpoint and the free space, leave no temporary file or folder, and
   keep a latest checkpoint that loads. Then a filler file is deleted (space freed) and
   ``--resume`` must finish, with final weights equal to an uninterrupted run's bit for bit.
   A second ``--resume`` on the still-full disk is tried first: it must fail the same way
   and not shrink the free space (no leftover temporaries eat it).
2. ``genimage sample`` into the same tmpfs filled to the last few KiB: one ``error:`` line
   naming the PNG, the PNG written before stays byte-identical, no temporaries.

Usage:
    sudo python scripts/reliability_full_disk.py [--size-kib 3072]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from kill_harness import final_state, temporaries, train_command  # noqa: E402

from genimage.training.checkpoint import find_latest_checkpoint, load_checkpoint  # noqa: E402


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(cmd):
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True)


def _errors(res) -> list[str]:
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("error:")]


def _check(ok: bool, what: str, results: list) -> None:
    results.append((ok, what))
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-kib", type=int, default=3072)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="full_disk_"))
    mnt = work / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_kib}k", "tmpfs", str(mnt)]).returncode:
        print("could not mount a tmpfs (needs root); nothing tested")
        return 2
    results: list = []
    try:
        ref = work / "reference"
        assert _run(train_command("diffusion", ref, args.steps, keep=100)).returncode == 0
        run = mnt / "run"
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (args.size_kib * 1024 // 3))  # freed later to let the run finish
        res = _run(train_command("diffusion", run, args.steps, keep=100))
        errs = _errors(res)
        print("\n".join(errs))
        _check(res.returncode == 2 and len(errs) == 1, "full disk: exit 2 with one error line", results)
        _check(bool(errs) and "no space left" in errs[0] and "free there" in errs[0] and "step-" in errs[0],
               "the line names the checkpoint and the free space", results)
        _check("Traceback" not in res.stderr, "no traceback", results)
        _check(not temporaries(run), "no temporary files or folders left", results)
        latest = find_latest_checkpoint(run / "checkpoints")
        loads = latest is not None
        if loads:
            load_checkpoint(latest)
        _check(loads, f"latest checkpoint {latest.name if latest else None} loads", results)
        free_before = shutil.disk_usage(mnt).free
        res2 = _run(train_command("diffusion", run, args.steps, keep=100) + ["--resume"])
        _check(res2.returncode == 2 and len(_errors(res2)) == 1, "a resume on the still-full disk fails in one line",
               results)
        _check(shutil.disk_usage(mnt).free >= free_before - 64 * 1024 and not temporaries(run),
               f"...and leaves the free space ({free_before} -> {shutil.disk_usage(mnt).free} bytes)", results)
        filler.unlink()
        shutil.rmtree(run / "samples", ignore_errors=True)
        res3 = _run(train_command("diffusion", run, args.steps, keep=2) + ["--resume"])
        _check(res3.returncode == 0, "after freeing space, --resume finishes", results)
        if res3.returncode == 0:
            a, b = final_state(ref), final_state(run)
            _check(a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a),
                   "final weights bit-identical to the uninterrupted run", results)
        shutil.rmtree(run)
        # 2. a PNG on a full disk
        out = mnt / "png"
        res = _run([sys.executable, "-m", "genimage.cli.main", "sample", "--model", "digits", "-n", "1", "--steps",
                    "2", "--out-dir", str(out)])
        assert res.returncode == 0, res.stderr
        png = out / "0000.png"
        old = png.read_bytes()
        free = shutil.disk_usage(mnt).free
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 512))
        res = _run([sys.executable, "-m", "genimage.cli.main", "sample", "--model", "digits", "-n", "1", "--steps",
                    "2", "--seed", "7", "--out-dir", str(out)])
        errs = _errors(res)
        print("\n".join(errs))
        _check(res.returncode == 2 and len(errs) == 1 and "0000.png" in errs[0], "PNG: one error line naming it",
               results)
        _check(png.read_bytes() == old and not temporaries(out), "PNG: the old file intact, no temporaries", results)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])  # lazy: loaded checkpoints may still be memory-mapped
        shutil.rmtree(work, ignore_errors=True)
    passed = sum(ok for ok, _ in results)
    print(f"{passed}/{len(results)} checks passed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
