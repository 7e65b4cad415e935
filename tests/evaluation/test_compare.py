"""genimage compare: one table across families."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from genimage.cli.main import app


def test_compare_trains_and_loads_models_into_one_table(tiny_model_dir, tmp_path):
    res = CliRunner().invoke(app, ["compare", "--data", "builtin:digits", "--model", f"tiny={tiny_model_dir}",
                                   "--train", "normalizing-flow", "--minutes", "0.02", "--out", str(tmp_path), "-n", "8"])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "compare.json").read_text())
    rows = {r["model"]: r for r in table["rows"]}
    assert rows["tiny"]["family"] == "diffusion" and rows["tiny"]["bits_per_dim"] is None
    assert rows["tiny"]["nfe"] == 4  # tiny model: 4 Euler steps; guidance 1 -> one evaluation per step
    flow = rows["normalizing-flow"]
    assert flow["bits_per_dim"] is not None and flow["bits_per_dim"] > 0 and flow["nfe"] == 1
    assert "| model | family | fd |" in res.output
    assert (tmp_path / "compare.png").stat().st_size > 100


def test_compare_rejects_bad_arguments(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["compare", "--data", "builtin:digits", "--model", "nofolder", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "NAME=FOLDER" in res.output
    res = runner.invoke(app, ["compare", "--data", "builtin:digits", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "nothing to compare" in res.output
