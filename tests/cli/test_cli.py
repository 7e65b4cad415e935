"""The command line: every command listed, user mistakes are one line and a non-zero exit."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from genimage.cli.main import app

runner = CliRunner()


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("train", "sample", "generate", "replay", "info", "data"):
        assert cmd in out


def test_sample_replay_info_round_trip(tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["sample", "--model", str(tiny_model_dir), "-n", "3", "--seed", "4", "--steps", "3",
                              "--out-dir", str(tmp_path), "--grid", str(tmp_path / "grid.png")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("0*.png")) == ["0000.png", "0001.png", "0002.png"]
    assert (tmp_path / "grid.png").is_file()
    res = runner.invoke(app, ["replay", str(tmp_path / "0002.png")])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["info", str(tiny_model_dir)])
    assert res.exit_code == 0 and "parameters:" in res.output and "training steps: 8" in res.output


@pytest.mark.parametrize("args,expected", [
    (["sample", "--model", "/no/such/model"], "not found"),
    (["sample", "--model", "{model}", "--sampler", "magic"], "unknown sampler"),
    (["sample", "--model", "{model}", "--steps", "0"], "--steps"),
    (["sample", "--model", "{model}", "-n", "0"], "-n"),
    (["sample", "--model", "{model}", "--label", "99"], "out of range"),
    (["replay", "/no/such.png"], "not found"),
    (["info", "/no/such/model"], "not found"),
    (["train", "--data", "/no/such/folder", "--out", "{tmp}/r"], "not found"),
    (["train", "--data", "{model}", "--out", "{tmp}/r", "--objective", "nope"], "unknown objective"),
])
def test_user_errors_are_one_line(tiny_model_dir, tmp_path, args, expected):
    args = [a.format(model=tiny_model_dir, tmp=tmp_path) for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], res.output


def test_pickle_weights_refused_from_the_command_line(tiny_model_dir, tmp_path):
    import shutil

    import torch

    folder = tmp_path / "evil"
    src = tiny_model_dir / "checkpoints"
    latest = (src / "latest").read_text().strip()
    shutil.copytree(src / latest, folder)
    torch.save({"x": torch.zeros(1)}, folder / "model.safetensors")
    res = runner.invoke(app, ["sample", "--model", str(folder), "-n", "1", "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "pickle" in res.output


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "genimage.cli.main", "info", str(tmp_path / "nothing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


def test_init_from_fine_tunes_and_records_its_source_through_resumes(tmp_path):
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder

    def source(run):
        return ModelConfig.load(resolve_model_folder(run)).training.get("init_from")

    base = ["train", "--data", "builtin:digits", "--preset", "tiny", "--batch-size", "8", "--no-progress",
            "--checkpoint-every", "0"]
    assert runner.invoke(app, base + ["--steps", "2", "--out", str(tmp_path / "a")]).exit_code == 0
    res = runner.invoke(app, base + ["--steps", "2", "--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert source(tmp_path / "b") == str(tmp_path / "a")
    res = runner.invoke(app, base + ["--steps", "3", "--out", str(tmp_path / "b"), "--resume"])
    assert res.exit_code == 0, res.output
    assert source(tmp_path / "b") == str(tmp_path / "a")
    res = runner.invoke(app, base + ["--steps", "2", "--out", str(tmp_path / "c"), "--init-from", "shapes"])
    assert res.exit_code != 0 and "same architecture" in res.output
