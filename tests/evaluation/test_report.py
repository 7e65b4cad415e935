"""genimage eval MODEL --data: report.json / report.html, sampler sweep, CLI routing."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.evaluation.report import evaluate_model
from genimage.evaluation.sweep import DEFAULT_GRID, nfe, sweep_plan


def test_report_of_a_tiny_model_has_finite_metrics_and_figures(tiny_model_dir, tmp_path):
    report = evaluate_model(str(tiny_model_dir), "builtin:digits", tmp_path, n=12, reference_limit=200, sweep=True,
                            sweep_with=[("again", str(tiny_model_dir))], log=lambda m: None)
    q = report["quality"]
    assert math.isfinite(q["fd"]) and q["fd"] > 0
    for key in ("precision", "recall", "density", "coverage"):
        assert 0 <= q[key] <= (10 if key == "density" else 1)
    assert "not comparable" in report["features"] or "NOT comparable" in report["features_note"]
    assert q["memorization"]["n_train"] == 200 and "copy_rate" in q["memorization"]["pixel"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["quality"]["fd"] == q["fd"]
    page = (tmp_path / "report.html").read_text()
    assert "Fréchet distance" in page and "samples.png" in page and "Sampler sweep" in page
    for f in report["figures"].values():
        assert (tmp_path / f).stat().st_size > 100
    assert {r["model"] for r in report["sweep"]} == {tiny_model_dir.name, "again"}
    samplers = {r["sampler"] for r in report["sweep"]}
    assert {"euler", "heun", "ddim", "dpmpp_2m"} <= samplers
    assert all(math.isfinite(r["fd"]) and r["nfe"] >= 1 for r in report["sweep"])


def test_nfe_counts_guidance_and_heun():
    class Cfg:
        num_classes, text_encoder = 10, None

    assert nfe(Cfg, "euler", 16, 2.0) == 32
    assert nfe(Cfg, "euler", 16, 1.0) == 16
    assert nfe(Cfg, "heun", 8, 1.0) == 15  # the last Heun step is an Euler step
    assert nfe(Cfg, "dpmpp_2m", 10, 1.0) == 10


def test_cli_eval_model_routes_and_reports_errors(tiny_model_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "builtin:digits", "--out", str(tmp_path),
                              "-n", "6"])
    assert res.exit_code == 0, res.output
    assert "FD " in res.output and (tmp_path / "report.html").is_file()
    bad = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "builtin:shapes", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "error:" in bad.output
    bad = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "builtin:digits", "-n", "1"])
    assert bad.exit_code == 2 and "at least 2" in bad.output


def test_sweep_plan_per_family():
    import dataclasses

    from tiny import tiny_model_config

    base = tiny_model_config(classes=10)
    assert len(sweep_plan(base)) == sum(len(v) for v in DEFAULT_GRID.values())
    cm = dataclasses.replace(base, family="consistency", family_config={"teacher": "digits"})
    assert sweep_plan(cm) == [("consistency", 1), ("consistency", 2)]
    multistep = dataclasses.replace(cm, family_config={"teacher": "digits", "segments": 2}, sampler="ddim", steps=2)
    assert sweep_plan(multistep) == [("ddim", 2)]  # its own deterministic steps, not Algorithm 1's re-noising
    assert sweep_plan(dataclasses.replace(base, family="gan")) == [(None, None)]
