"""The bundled three-object model (issue 22 item 3): `genimage generate --model shapes3` works from
the package, and it draws three-object prompts the two-object `shapes` model cannot."""

import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.shapes_analyzer import score
from genimage.pipeline import Pipeline
from genimage.provenance.record import read_record

THREE = ["a red circle above a blue square to the left of a green triangle",
         "a yellow triangle to the left of a purple circle below an orange square",
         "a blue circle below a green square to the right of a red triangle",
         "a purple square to the right of a yellow circle above a blue triangle"] * 4
TWO = ["a red circle", "a blue square above a yellow triangle", "a green triangle to the left of a red circle",
       "a yellow square below a blue circle"] * 2


def test_cli_generates_a_three_object_scene_with_its_defaults(tmp_path):
    out = tmp_path / "a.png"
    res = CliRunner().invoke(app, ["generate", "--model", "shapes3", THREE[0], "-o", str(out)])
    assert res.exit_code == 0, res.output
    record = read_record(out)
    assert (record.model, record.sampler, record.steps, record.guidance) == ("shapes3", "euler", 8, 3.0)
    assert record.prompt == THREE[0]


def test_follows_three_object_prompts_where_shapes_does_not_and_keeps_two_object_skill():
    model = Pipeline.from_pretrained("shapes3")
    seeds = list(range(len(THREE)))
    images = model(seeds, prompts=THREE)
    assert torch.isfinite(images).all()
    ok = sum(score(im, p).overall for im, p in zip(images, THREE))
    base = Pipeline.from_pretrained("shapes")(seeds, prompts=THREE)
    base_ok = sum(score(im, p).overall for im, p in zip(base, THREE))
    # 16 prompts: about 14-15 expected at the model's 0.91; the two-object model gets about none
    assert ok >= 11 and ok >= base_ok + 8, (ok, base_ok)
    two = model(list(range(len(TWO))), prompts=TWO)
    assert sum(score(im, p).overall for im, p in zip(two, TWO)) >= 7  # 8 one/two-object prompts
