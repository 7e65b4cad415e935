"""The invisible watermark: a keyed +-1 pattern at 2 levels, found by correlation in the
high frequencies; carried by records, applied on save, checked by replay and `genimage detect`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.builtin import load_builtin
from genimage.errors import GenimageError
from genimage.pipeline import Pipeline, replay
from genimage.provenance import watermark as wm
from genimage.provenance.record import read_pixels, read_record

runner = CliRunner()


@pytest.fixture(scope="module")
def shapes_images():
    data = load_builtin("shapes", split="eval", length=24)
    return torch.stack([data[i]["image"] for i in range(len(data))])


def test_pattern_is_keyed_and_balanced():
    a = wm.pattern("k", (3, 32, 32))
    assert torch.equal(a, wm.pattern("k", (3, 32, 32))) and set(a.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(a.mean())) < 0.05
    assert (a != wm.pattern("other", (3, 32, 32))).float().mean() > 0.4
    assert wm.fits(3, 32, 32) and not wm.fits(1, 8, 8) and not wm.fits(3, 16, 16)


def test_embed_is_invisible_and_on_the_8_bit_grid(shapes_images):
    x = shapes_images[0]
    marked = wm.embed(x, "k")
    levels = (marked + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    diff = (levels - ((x + 1) * 127.5).round()).abs()
    assert diff.max() <= 2 + 1e-4
    psnr = 10 * torch.log10(255**2 / (diff**2).mean())
    assert psnr > 40


def test_marked_images_are_detected_and_others_are_not(shapes_images):
    marked = torch.stack([wm.embed(x, "k") for x in shapes_images])
    z_marked = wm.detection_scores(marked, "k")
    z_plain = wm.detection_scores(shapes_images, "k")
    z_other_key = wm.detection_scores(marked, "another key")
    assert bool((z_marked > wm.DETECTION_Z).all()), z_marked
    assert bool((z_plain < wm.DETECTION_Z).all()) and bool((z_other_key < wm.DETECTION_Z).all())
    assert abs(wm.p_value(wm.DETECTION_Z) - 1e-3) < 1e-6


def test_records_mark_large_images_only_and_replay_checks_the_key(tmp_path, monkeypatch, tiny_model_dir):
    shapes = Pipeline.from_pretrained("shapes")
    opts = shapes.options(steps=3)
    img = shapes([2], prompts=["a red circle"], options=opts)
    rec = shapes.records([2], prompts=["a red circle"], options=opts)[0]
    assert rec.watermark == {"key_id": wm.key_id(wm.DEFAULT_KEY), "strength": 2}
    path = shapes.save(img, [rec], [tmp_path / "s.png"])[0]
    pixels = read_pixels(path).permute(2, 0, 1).float() / 127.5 - 1
    assert float(wm.detection_scores(pixels[None])[0]) > wm.DETECTION_Z
    assert replay(path).match and read_record(path).watermark == rec.watermark
    monkeypatch.setenv(wm.KEY_ENV, "my secret")
    with pytest.raises(GenimageError, match="set GENIMAGE_WATERMARK_KEY to the key it was made with"):
        replay(path)
    monkeypatch.delenv(wm.KEY_ENV)
    shapes.watermark = False
    assert shapes.records([2], prompts=["a red circle"], options=opts)[0].watermark is None
    tiny = Pipeline.from_pretrained(tiny_model_dir)  # 8x8 gray: too small for a mark
    assert tiny.records([0], [0])[0].watermark is None


def test_detect_cli(tmp_path):
    res = runner.invoke(app, ["generate", "a blue square", "-o", str(tmp_path / "m.png"), "--steps", "3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["generate", "a blue square", "-o", str(tmp_path / "u.png"), "--steps", "3", "--no-watermark"])
    assert res.exit_code == 0 and read_record(tmp_path / "u.png").watermark is None
    res = runner.invoke(app, ["sample", "--model", "digits", "-n", "1", "--out-dir", str(tmp_path / "d")])
    assert res.exit_code == 0
    res = runner.invoke(app, ["detect", str(tmp_path / "m.png"), str(tmp_path / "u.png"), str(tmp_path / "d" / "0000.png")])
    reports = res.output.strip().split("\n" + str(tmp_path))
    assert res.exit_code == 0 and len(reports) == 3, res.output
    assert "pattern mark: found" in reports[0] and "record: shapes" in reports[0]
    assert "DWT-DCT mark: cannot be carried" in reports[0]  # 32x32: 16 blocks for 32 bits
    assert "pattern mark: not found" in reports[1] and "pattern mark: cannot be carried" in reports[2]
    assert all("manifest: " in r for r in reports)
    res = runner.invoke(app, ["detect", "--json", str(tmp_path / "m.png")])
    info = json.loads(res.output)
    assert info["marks"]["pattern"]["found"] and info["marks"]["pattern"]["z"] > 3.09 and info["channels"] == 3
    assert info["marks"]["dwtdct"]["found"] is None and info["record"]["model"] == "shapes"
    (tmp_path / "bad.png").write_bytes(b"nope")
    res = runner.invoke(app, ["detect", str(tmp_path / "bad.png")])
    assert res.exit_code == 2 and "cannot read" in res.output
