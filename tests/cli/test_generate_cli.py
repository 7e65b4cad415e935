"""`genimage generate` and `genimage eval prompts` on a tiny text-conditional model."""

import json

from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.provenance.record import read_record

runner = CliRunner()


def test_prompts_file_writes_one_image_per_line_in_order(tiny_text_model_dir, tmp_path):
    prompts = ["a red circle", "a blue square to the left of a green triangle", "an orange square"]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    res = runner.invoke(app, ["generate", "--prompts", str(tmp_path / "p.txt"), "--out-dir", str(tmp_path / "o"),
                              "--seed", "7", "--model", str(tiny_text_model_dir)])
    assert res.exit_code == 0, res.output
    for i, prompt in enumerate(prompts):
        rec = read_record(tmp_path / "o" / f"{i:04d}.png")
        assert rec.prompt == prompt and rec.seed == 7 + i
    # a single prompt with the same seed reproduces image 1 exactly
    res = runner.invoke(app, ["generate", prompts[1], "-o", str(tmp_path / "one.png"), "--seed", "8",
                              "--model", str(tiny_text_model_dir)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "o" / "0001.png").read_bytes()


def test_negative_prompt_changes_the_image_and_is_recorded(tiny_text_model_dir, tmp_path):
    base = ["generate", "a red circle", "--model", str(tiny_text_model_dir), "--guidance", "3"]
    assert runner.invoke(app, base + ["-o", str(tmp_path / "a.png")]).exit_code == 0
    res = runner.invoke(app, base + ["-o", str(tmp_path / "b.png"), "--negative", "a blue square"])
    assert res.exit_code == 0, res.output
    assert read_record(tmp_path / "b.png").negative == "a blue square"
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    res = runner.invoke(app, ["replay", str(tmp_path / "b.png")])
    assert res.exit_code == 0 and "identical" in res.output


def test_generate_errors(tiny_text_model_dir, tmp_path):
    for args, expected in [
        (["generate"], "PROMPT or --prompts"),
        (["generate", "--prompts", str(tmp_path / "none.txt"), "--out-dir", str(tmp_path)], "not found"),
        (["generate", "x", "--model", str(tiny_text_model_dir), "--size", "64"], "16px"),
        (["generate", "x", "--model", str(tiny_text_model_dir), "--eta", "0.5"], "--eta"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and expected in res.output, (args, res.output)


def test_eval_prompts_report(tiny_text_model_dir, tmp_path):
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["eval", "prompts", "--model", str(tiny_text_model_dir), "-n", "6", "--steps", "2",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    for split in ("seen", "held_out"):
        r = report[split]
        assert r["n"] == 6
        for key in ("overall", "count", "binding"):
            assert 0.0 <= r[key] <= 1.0
        assert r["overall"] <= min(r["count"], r["binding"])
    assert report["images_per_s"] > 0


def test_guidance_interval_is_recorded_and_replays(tiny_text_model_dir, tmp_path):
    base = ["generate", "a red circle", "--model", str(tiny_text_model_dir), "--guidance", "4", "--steps", "4"]
    assert runner.invoke(app, base + ["-o", str(tmp_path / "a.png")]).exit_code == 0
    res = runner.invoke(app, base + ["-o", str(tmp_path / "b.png"), "--guidance-interval", "0.5,1"])
    assert res.exit_code == 0, res.output
    assert read_record(tmp_path / "b.png").guidance_interval == [0.5, 1.0]
    assert read_record(tmp_path / "a.png").guidance_interval is None
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    res = runner.invoke(app, ["replay", str(tmp_path / "b.png")])
    assert res.exit_code == 0 and "identical" in res.output
    res = runner.invoke(app, base + ["-o", str(tmp_path / "c.png"), "--guidance-interval", "0.9,0.1"])
    assert res.exit_code == 2 and "guidance interval" in res.output
