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


def test_eval_on_a_folder_uses_generic_features_and_warns_for_noise_data(tmp_path):
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # white noise: far from any photo
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(folder), "--out", str(run), "--recipe", "none", "--backbone", "dit",
                              "--preset", "tiny", "--image-size", "32", "--steps", "1", "--no-progress", "--no-estimate"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(run), "--data", str(folder), "--out", str(tmp_path / "ev"), "-n", "8"])
    assert res.exit_code == 0, res.output
    assert "features: genimage-generic-simclr-cnn" in res.output and "FD " in res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert set(report["domain"]) == {"samples", "reference", "warnings"}
    assert 0 <= report["domain"]["samples"]["outside"] <= 1
    ref = report["domain"]["reference"]
    assert ref["outside"] == 1.0 and ref["warning"] in report["domain"]["warnings"]
    assert "warning: 100% of the reference data lie outside the domain of the 'generic' features" in res.output
