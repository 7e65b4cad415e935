"""``--nproc 2`` on the command line: torchrun workers (gloo, one thread each) that stop together
on SIGTERM, resume, and give one process's results (training within 1e-5, sampling bit for bit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.training.checkpoint import find_latest_checkpoint
from genimage.utils.weights import load_safetensors

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAIN = [sys.executable, "-m", "genimage.cli.main", "train", "--data", "builtin:digits", "--preset", "tiny",
         "--checkpoint-every", "0", "--no-progress", "--fp32", "--warmup-steps", "2"]


def _weights(run) -> dict[str, torch.Tensor]:
    return load_safetensors(find_latest_checkpoint(run / "checkpoints") / "network.safetensors")


def test_train_nproc_stops_both_ranks_on_sigterm_like_one_process(tmp_path):
    out = tmp_path / "two"
    proc = subprocess.Popen([*TRAIN, "--out", str(out), "--steps", "100000", "--batch-size", "8", "--nproc", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline:  # 10 steps done
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "(2 processes)" in stdout and err.count("continue with --resume") == 1  # rank 0 reports
    latest = find_latest_checkpoint(out / "checkpoints")
    stopped = int(latest.name.split("-")[1])
    assert stopped >= 10 and json.loads((latest / "trainer.json").read_text())["world_size"] == 2
    # the checkpoint both ranks stopped at is one process's with the global batch (resume: test_distributed.py)
    one = CliRunner().invoke(app, [*TRAIN[3:], "--out", str(tmp_path / "one"), "--steps", str(stopped),
                                   "--batch-size", "16"])
    assert one.exit_code == 0, one.output
    a, b = _weights(out), _weights(tmp_path / "one")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    logged = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == sorted({r["step"] for r in logged})  # one writer, no repeats


def _pngs(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _sample(model, out, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "genimage.cli.main", "sample", "--model", str(model), "-n", "5",
           "--out-dir", str(out), "--grid", str(out) + "-grid.png", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)


def test_sample_nproc_writes_the_same_files_as_one_process(tmp_path):
    one = CliRunner().invoke(app, ["sample", "--model", "digits", "-n", "5", "--steps", "2", "--fp32",
                                   "--out-dir", str(tmp_path / "one"), "--grid", str(tmp_path / "one") + "-grid.png"])
    assert one.exit_code == 0, one.output
    res = _sample("digits", tmp_path / "two", "--steps", "2", "--fp32", "--nproc", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(5 images, 2 processes)" in res.stdout and res.stdout.count("wrote") == 1  # rank 0 reports
    one_files, two_files = _pngs(tmp_path / "one"), _pngs(tmp_path / "two")
    assert list(one_files) == [f"{i:04d}.png" for i in range(5)] and one_files == two_files  # bytes, records included
    assert (tmp_path / "one-grid.png").read_bytes() == (tmp_path / "two-grid.png").read_bytes()


def test_each_rank_of_a_one_pass_family_writes_its_share_of_one_processs_files(tmp_path):
    from distributed_worker import family_setup

    from genimage.cli.sample import _direct_family_config, _sample_direct
    from genimage.training.loop import Trainer
    from tiny import tiny_train_config

    mc, data, kw = family_setup("vae")
    Trainer(mc, tiny_train_config(2, **kw), data, tmp_path / "vae").train()
    config = _direct_family_config(str(tmp_path / "vae"))
    _sample_direct(str(tmp_path / "vae"), config, 5, 0, None, None, tmp_path / "one", None, "cpu", True)
    for rank in (0, 1):  # what the two workers of --nproc 2 do (no grid: no gather)
        _sample_direct(str(tmp_path / "vae"), config, 5, 0, None, None, tmp_path / f"rank{rank}", None, "cpu", True,
                       share=(rank, 2))
    assert list(_pngs(tmp_path / "rank0")) == ["0000.png", "0002.png", "0004.png"]
    assert {**_pngs(tmp_path / "rank0"), **_pngs(tmp_path / "rank1")} == _pngs(tmp_path / "one")


def test_eval_nproc_measures_the_same_samples_as_one_process(tmp_path):
    args = ["eval", "digits", "--data", "builtin:digits", "-n", "12"]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    res = subprocess.run([sys.executable, "-m", "genimage.cli.main", *args, "--out", str(tmp_path / "two"),
                          "--nproc", "2"], capture_output=True, text=True, env=ENV, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("report:") == 1  # rank 0 reports
    a, b = (json.loads((tmp_path / d / "report.json").read_text())["quality"] for d in ("one", "two"))
    a.pop("seconds", None), b.pop("seconds", None)
    assert a == b  # FD, KID, precision/recall, memorization: the same samples
    assert (tmp_path / "one" / "samples.png").read_bytes() == (tmp_path / "two" / "samples.png").read_bytes()
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x"), "--sweep", "--nproc", "2"])
    assert refused.exit_code == 2 and "one process" in refused.output


def test_grad_accum_reaches_the_trainer_and_is_refused_for_gans(tmp_path):
    ok = CliRunner().invoke(app, [*TRAIN[3:], "--out", str(tmp_path / "ga"), "--steps", "2", "--batch-size", "4",
                                  "--grad-accum", "2"])
    assert ok.exit_code == 0, ok.output
    run = json.loads((tmp_path / "ga" / "run.json").read_text())["training"]
    assert run["grad_accum"] == 2 and run["batch_size"] == 4
    gan = CliRunner().invoke(app, [*TRAIN[3:], "--family", "gan", "--out", str(tmp_path / "gan"), "--steps", "2",
                                   "--grad-accum", "2"])
    assert gan.exit_code == 2 and "--grad-accum 2 with --family gan" in gan.output
