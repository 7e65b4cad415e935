"""A real process killed with SIGTERM during training saves a checkpoint that resumes."""

import os
import signal
import subprocess
import sys
import time

from genimage.training.checkpoint import find_latest_checkpoint


def test_sigterm_saves_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genimage.cli.main", "train", "--data", "builtin:digits", "--out", str(out),
           "--preset", "tiny", "--steps", "100000", "--batch-size", "8", "--checkpoint-every", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline:  # first 10 steps logged
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    latest = find_latest_checkpoint(out / "checkpoints")
    assert latest is not None and int(latest.name.split("-")[1]) >= 10
    res = subprocess.run(cmd[:-7] + ["--steps", str(int(latest.name.split("-")[1]) + 2), "--batch-size", "8",
                                      "--checkpoint-every", "0", "--no-progress", "--resume"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
