"""kill -9 a real ``genimage train`` process at random moments and inside checkpoint writes,
resume it each time, and compare its final weights with an uninterrupted run.

Used by tests/training/test_kill.py (one family, two kills) and
scripts/reliability_kill.py (every family, many kills; results in RELIABILITY.md).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genimage.training.checkpoint import find_latest_checkpoint, load_checkpoint

#: ``genimage train`` options of each family's small run on digits.
FAMILY_ARGS = {
    "diffusion": ["--family", "diffusion", "--preset", "tiny"],
    "gan": ["--family", "gan", "--preset", "tiny"],
    "vae": ["--family", "vae", "--preset", "tiny"],
    "normalizing-flow": ["--family", "normalizing-flow", "--preset", "tiny"],
    "autoencoder": ["--family", "autoencoder", "--preset", "tiny", "--cond", "none"],
    "consistency": ["--family", "consistency", "--preset", "ct-tiny"],  # consistency training (no teacher)
    # the families that learn from a teacher (the bundled digits flow): a teacher's ODE step per
    # training step (consistency distillation), and a pair pool generated before training and
    # kept in every checkpoint (reflow)
    "consistency-distill": ["--family", "consistency", "--teacher", "digits"],
    "reflow": ["--family", "reflow", "--teacher", "digits", "--set", "pairs=32"],
}


def train_command(family: str, out: Path, steps: int, keep: int, every: int = 2) -> list[str]:
    return [sys.executable, "-m", "genimage.cli.main", "train", "--data", "builtin:digits", "--length", "64",
            *FAMILY_ARGS[family], "--steps", str(steps), "--batch-size", "8", "--checkpoint-every", str(every),
            "--keep-checkpoints", str(keep), "--sample-every", "0", "--no-progress", "--seed", "0", "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def temporaries(run: Path) -> set[Path]:
    """Temporary files/folders a write leaves while in flight (or after a kill)."""
    found = set()
    for p in run.rglob(".*"):
        if p.name.startswith(".tmp-step-") or p.name.endswith(".tmp"):
            found.add(p)
    return found


def final_state(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the run's latest checkpoint (``file/name`` keys)."""
    tensors, meta = load_checkpoint(find_latest_checkpoint(run / "checkpoints"))
    out = {f"{f}/{k}": v for f, ts in tensors.items() for k, v in ts.items() if f != "trainer.safetensors"}
    out["history"] = torch.tensor(meta["trainer.json"]["loss_history"], dtype=torch.float64)
    return out


@dataclass
class Campaign:
    """What one family's kill campaign saw.

    Attributes:
        family: The family.
        kills: Processes killed with SIGKILL.
        in_save: Of those, killed while a ``.tmp-step-*`` checkpoint folder existed.
        valid_after_kill: Kills after which the latest checkpoint (if any yet) loaded completely.
        no_checkpoint_yet: Kills before the first checkpoint (the resume started fresh).
        stale_cleaned: Kills that left temporaries which were gone after the next start.
        stale_left: Kills whose temporaries survived the next start (must be 0).
        identical: The final weights equal the uninterrupted run's bit for bit.
        failures: What went wrong.
    """

    family: str
    keep: int
    kills: int = 0
    in_save: int = 0
    valid_after_kill: int = 0
    no_checkpoint_yet: int = 0
    stale_cleaned: int = 0
    stale_left: int = 0
    identical: bool = False
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def _wait_for_save(proc: subprocess.Popen, root: Path, deadline: float, min_step: int = 0) -> bool:
    """Poll until a checkpoint of step ``min_step`` or later is being written (its
    ``.tmp-step-*`` folder exists); ``False`` if the process ended or the deadline passed first."""
    while time.time() < deadline and proc.poll() is None:
        if root.is_dir():
            try:
                if any(p.name.startswith(".tmp-step-") and int(p.name.split("-")[2]) >= min_step
                       for p in os.scandir(root)):
                    return True
            except (FileNotFoundError, ValueError, IndexError):
                pass
        time.sleep(0.0005)
    return False


def start_reference(family: str, out: Path, steps: int, keep: int = 2) -> subprocess.Popen:
    """Start the uninterrupted run (e.g. beside a campaign, on another core)."""
    return subprocess.Popen(train_command(family, out, steps, keep), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait_for_text(proc: subprocess.Popen, log_path: Path, text: str, deadline: float) -> bool:
    while time.time() < deadline and proc.poll() is None:
        if text in log_path.read_text():
            return True
        time.sleep(0.01)
    return False


def _training_seconds(proc: subprocess.Popen, log_path: Path) -> float:
    """Seconds from the trainer's start (its "parameters:" line) to the process's end."""
    _wait_for_text(proc, log_path, "parameters:", time.time() + 600)
    t0 = time.time()
    proc.wait()
    return max(time.time() - t0, 0.5)


def run_campaign(family: str, work: Path, kills: int, steps: int, keep: int = 2, seed: int = 0, every: int = 2,
                 reference: Path | None = None, reference_proc: subprocess.Popen | None = None,
                 log=print) -> Campaign:
    """Kill ``kills`` times (every other kill inside a checkpoint write, the others at a random
    moment), resuming each time, then finish and compare with ``reference`` (an uninterrupted
    run folder, still being trained by ``reference_proc`` if given; trained here first if ``None``)."""
    rng = random.Random(seed)
    c = Campaign(family, keep)
    t_start = time.time()
    work.mkdir(parents=True, exist_ok=True)
    if reference is None:
        reference = work / "reference"
        with open(work / "reference.log", "w") as log_file:
            proc = subprocess.Popen(train_command(family, reference, steps, keep, every), env=_env(), stdout=log_file,
                                    stderr=subprocess.STDOUT)
        train_seconds = _training_seconds(proc, work / "reference.log")
        if proc.returncode != 0:
            c.failures.append(f"the reference run exited {proc.returncode}")
            return c
    else:
        train_seconds = 5.0
    run = work / "killed"
    root = run / "checkpoints"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    launches = 0
    pending: set[Path] = set()  # temporaries of killed processes, to be gone once a new one has started
    while c.kills < kills:
        resume = ["--resume"] if run.exists() else []
        pending |= temporaries(run) if run.exists() else set()
        log_path = logs / f"{launches:03d}.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(train_command(family, run, steps, keep, every) + resume, env=_env(),
                                    stdout=log_file, stderr=subprocess.STDOUT)
        launches += 1
        in_save = c.kills % 2 == 0
        if in_save:  # inside the save of a random later checkpoint
            done = find_latest_checkpoint(root) if root.is_dir() else None
            current = int(done.name.split("-")[1]) if done else 0
            target = rng.randrange(current + every, steps + 1, every) if current + every <= steps else steps
            hit = _wait_for_save(proc, root, time.time() + 300, min_step=target)
        else:  # a random moment of the training proper (or of its start-up, 1 time in 5)
            ready = _wait_for_text(proc, log_path, "parameters:", time.time() + 300)
            if ready and rng.random() < 0.8:
                time.sleep(rng.uniform(0.0, train_seconds))
            elif not ready:
                pass
            else:
                proc.send_signal(signal.SIGKILL)  # right after the trainer started (resume / clean-up done)
            hit = proc.poll() is None or proc.returncode == -signal.SIGKILL
        if hit:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = "parameters:" in log_path.read_text()  # printed once the trainer (and its clean-up) ran
        if pending and started:
            left = sorted(str(p) for p in pending if p.exists())
            if left:
                c.stale_left += 1
                c.failures.append(f"launch {launches}: temporaries {left} survived the next start")
            else:
                c.stale_cleaned += 1
            pending = set()
        if not hit:  # the run finished before the kill: start over so that every kill counts
            if proc.returncode != 0:
                c.failures.append(f"launch {launches} exited {proc.returncode} (see {logs})")
                break
            import shutil

            shutil.rmtree(run)
            continue
        c.kills += 1
        c.in_save += int(in_save)
        latest = find_latest_checkpoint(root)
        finished = latest is not None and latest.name == f"step-{steps:08d}"
        if latest is None:
            c.no_checkpoint_yet += 1
            c.valid_after_kill += 1
        else:
            try:
                load_checkpoint(latest)
                c.valid_after_kill += 1
            except Exception as exc:  # noqa: BLE001  (what the campaign looks for)
                c.failures.append(f"kill {c.kills}: latest checkpoint {latest} does not load: {exc}")
        log(f"{family}: kill {c.kills}/{kills} ({'inside a save' if in_save else 'random moment'}); "
            f"latest = {latest.name if latest else 'none yet'}; temporaries left: {len(temporaries(run))}")
        if finished:  # killed after its last checkpoint: start the run over, so later kills hit training
            import shutil

            shutil.rmtree(run)
            pending = set()
    leftovers = pending | temporaries(run)
    final = subprocess.run(train_command(family, run, steps, keep, every) + (["--resume"] if run.exists() else []),
                           env=_env(), capture_output=True, text=True)
    if final.returncode != 0:
        c.failures.append(f"final resume exited {final.returncode}: {final.stderr.strip().splitlines()[-1:]}")
    else:
        if leftovers and any(p.exists() for p in leftovers):
            c.stale_left += 1
            c.failures.append("temporaries survived the final resume")
        elif leftovers:
            c.stale_cleaned += 1
        if temporaries(run):
            c.failures.append(f"temporaries after the finished run: {sorted(map(str, temporaries(run)))}")
        if reference_proc is not None and reference_proc.wait() != 0:
            c.failures.append(f"the reference run exited {reference_proc.returncode}")
            return c
        a, b = final_state(reference), final_state(run)
        c.identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        if not c.identical:
            c.failures.append("final weights differ from the uninterrupted run")
        n_ckpt = len([p for p in root.iterdir() if p.name.startswith("step-")])
        if n_ckpt > keep:
            c.failures.append(f"{n_ckpt} checkpoints kept with --keep-checkpoints {keep}")
    c.seconds = time.time() - t_start
    return c
