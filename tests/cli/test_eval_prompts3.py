"""`genimage eval prompts --three-object-share`: three-object prompts, reported per object count."""

import json

from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.shapes import sample_captions

runner = CliRunner()


def test_eval_prompts_three_object_report(tiny_text_model_dir, tmp_path):
    base = ["eval", "prompts", "--model", str(tiny_text_model_dir), "-n", "6", "--steps", "2"]
    res = runner.invoke(app, base + ["--three-object-share", "1", "-o", str(tmp_path / "r3.json")])
    assert res.exit_code == 0, res.output
    assert "| seen | 3 | 6 |" in res.output and "relation 2" in res.output
    report = json.loads((tmp_path / "r3.json").read_text())
    assert report["three_object_share"] == 1.0
    for split in ("seen", "held_out"):
        by = report[split]["by_objects"]
        assert list(by) == ["3"] and by["3"]["n"] == 6 and report[split]["n_relations"] == 6
        for key in ("overall", "count", "binding", "relation1", "relation2", "position"):
            assert 0.0 <= by["3"][key] <= 1.0
        assert by["3"]["overall"] <= min(by["3"]["count"], by["3"]["binding"], by["3"]["position"])
    # The default prompts are the original one/two-object ones, and the top table is unchanged.
    res = runner.invoke(app, base + ["-o", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "| split | n | overall | count | binding | position (2-object) |" in res.output
    report = json.loads((tmp_path / "r.json").read_text())
    n_two = sum(" of " in c or " above " in c or " below " in c for c in sample_captions(6, seed=0, split="train"))
    assert report["seen"]["n_relations"] == n_two and "3" not in report["seen"]["by_objects"]
    res = runner.invoke(app, base + ["--three-object-share", "1.5"])
    assert res.exit_code == 2 and "three_object_share" in res.output
