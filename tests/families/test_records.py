"""genimage sample / replay / info for one-pass families (here a normalizing flow)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.provenance.record import read_record


def test_sample_replay_and_info_for_a_normalizing_flow(tmp_path):
    runner = CliRunner()
    run = tmp_path / "nf"
    res = runner.invoke(app, ["train", "--family", "normalizing-flow", "--preset", "tiny", "--data", "builtin:digits",
                              "--out", str(run), "--steps", "2", "--batch-size", "8", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sample", "--model", str(run), "-n", "3", "--label", "7", "--out-dir", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    record = read_record(tmp_path / "s" / "0001.png")
    assert (record.sampler, record.label, record.seed) == ("normalizing-flow", 7, 1)
    res = runner.invoke(app, ["replay", str(tmp_path / "s" / "0001.png")])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output
    if record.device == "cpu":  # --device auto: the CPU unless there is a CUDA GPU
        assert '"device"' not in record.to_json()  # CPU records keep their old form
    else:
        assert torch.cuda.is_available() and record.device == "cuda" and '"device": "cuda"' in record.to_json()
    res = runner.invoke(app, ["replay", str(tmp_path / "s" / "0001.png"), "--device", "gpu"])
    assert res.exit_code == 2 and "unknown device 'gpu'" in res.output
    res = runner.invoke(app, ["info", str(run)])
    assert res.exit_code == 0 and "parameters: 187,088" in res.output
    res = runner.invoke(app, ["sample", "--model", str(run), "--prompt", "a red circle", "--out-dir", str(tmp_path)])
    assert res.exit_code == 2 and "not text-conditional" in res.output
