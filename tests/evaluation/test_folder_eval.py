"""``genimage eval`` on an image folder without --features: the generic net, named, with the
domain check in the report."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.evaluation.report import default_features


def test_default_features_by_data():
    assert default_features("builtin:digits") == "digits" and default_features("builtin:shapes3") == "shapes"
    assert default_features("builtin:photos") == "generic" and default_features("/some/folder") == "generic"


def test_eval_on_a_folder_uses_generic_features_and_warns_for_an_untrained_model(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.new("RGB", (12, 12), (30 * i, 100, 250 - 30 * i)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(folder), "--out", str(run), "--recipe", "none", "--backbone", "dit",
                              "--preset", "tiny", "--image-size", "8", "--steps", "1", "--no-progress", "--no-estimate"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(run), "--data", str(folder), "--out", str(tmp_path / "ev"), "-n", "8"])
    assert res.exit_code == 0, res.output
    assert "features: genimage-generic-simclr-cnn" in res.output and "FD " in res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert set(report["domain"]) == {"samples", "reference", "warnings"}
    assert 0 <= report["domain"]["samples"]["outside"] <= 1
    # one step of training: the samples are noise, which the generic features flag
    assert report["domain"]["samples"]["warning"] and "warning: " in res.output
