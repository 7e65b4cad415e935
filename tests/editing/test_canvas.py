"""Edits at the input's own size (genimage.editing.canvas): sizes, composites, tiles, replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.editing.canvas import CanvasEdit, _tiles, build_canvas_edit, tile_starts
from genimage.errors import GenimageError
from genimage.pipeline import replay
from genimage.provenance.record import read_record

runner = CliRunner()


def _rgb(path, w=24, h=16, seed=0):
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8) + np.array([220, 225, 235], np.uint8)
    arr[2:h - 2, 3:w // 2] = (200, 30, 30)
    arr += rng.integers(0, 8, arr.shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return np.asarray(Image.open(path))


def _edit(args):
    result = runner.invoke(app, ["edit", *args, "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return result.output


def _replays(out, init, mask=None):
    res = replay(out, init=init, mask=mask)
    return res.match and res.weights_match


def test_img2img_of_a_small_non_square_input_keeps_its_size(tmp_path):
    inp = tmp_path / "in.png"
    _rgb(inp)
    out = tmp_path / "out.png"
    text = _edit([str(inp), "-o", str(out), "--strength", "1.0"])
    assert "24x16 -> 24x16: resized 24x16 -> 32x32 -> 24x16" in text
    assert Image.open(out).size == (24, 16)
    rec = read_record(out)
    assert (rec.width, rec.height) == (24, 16) and rec.edit["canvas"]["fit"] == "resize"
    assert _replays(out, inp)


def test_inpainting_keeps_every_unmasked_pixel_of_the_input(tmp_path):
    inp, mask = tmp_path / "in.png", tmp_path / "mask.png"
    src = _rgb(inp, 40, 24)
    m = np.zeros((12, 20), np.uint8)  # a mask of another size: resized to the input's (nearest)
    m[:, 10:] = 255
    Image.fromarray(m).save(mask)
    out = tmp_path / "out.png"
    text = _edit([str(inp), "--mask", str(mask), "-o", str(out), "--no-watermark"])
    assert "composited into the input" in text
    got = np.asarray(Image.open(out))
    assert got.shape == src.shape
    assert np.array_equal(got[:, :20], src[:, :20])  # kept exactly
    assert (got[:, 20:] != src[:, 20:]).mean() > 0.5  # regenerated
    assert _replays(out, inp, mask)
    other = tmp_path / "other.png"
    Image.fromarray(np.eye(12, 20, dtype=np.uint8) * 255).save(other)
    with pytest.raises(GenimageError, match="not the mask"):
        replay(out, init=inp, mask=other)


def test_outpainting_adds_the_border_at_the_inputs_scale(tmp_path):
    inp = tmp_path / "in.png"
    src = _rgb(inp, 20, 12)
    out = tmp_path / "out.png"
    _edit([str(inp), "--extend", "4,0,6,2", "-o", str(out), "--no-watermark"])
    got = np.asarray(Image.open(out))
    assert got.shape[:2] == (12 + 0 + 2, 20 + 4 + 6)
    assert np.array_equal(got[0:12, 4:24], src)
    assert _replays(out, inp)


def test_an_input_at_the_models_size_is_not_resized(tmp_path):
    inp = tmp_path / "in.png"
    _rgb(inp, 32, 32)
    out = tmp_path / "out.png"
    assert "at the model's size" in _edit([str(inp), "-o", str(out)])
    assert read_record(out).edit["canvas"]["fit"] == "native"
    assert _replays(out, inp)


def test_upscale_returns_factor_times_the_input_tile_by_tile(tmp_path):
    inp = tmp_path / "d.png"
    arr = np.zeros((5, 6), np.uint8)
    arr[1:4, 2] = 255
    Image.fromarray(arr).save(inp)
    out = tmp_path / "up.png"
    text = _edit([str(inp), "--model", "digits", "--upscale", "2", "-o", str(out)])
    assert "6x5 -> 12x10" in text and "tiles of 4px" in text
    assert Image.open(out).size == (12, 10)
    assert read_record(out).edit["canvas"]["tiles"] == 4
    assert _replays(out, inp)
    tiny = tmp_path / "tiny.png"  # smaller than one low-resolution tile: never a smaller output
    Image.fromarray(arr[:2, :3]).save(tiny)
    out2 = tmp_path / "up2.png"
    _edit([str(tiny), "--model", "digits", "--upscale", "4", "-o", str(out2)])
    assert Image.open(out2).size == (12, 8)
    assert _replays(out2, tiny)


def test_tiles_cover_the_input_and_the_blend_of_agreeing_tiles_is_exact():
    for length, tile, overlap in [(4, 4, 1), (5, 4, 1), (13, 4, 1), (40, 16, 4), (17, 8, 0)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    high = torch.rand(1, 1, 20, 26, generator=torch.Generator().manual_seed(0)) * 2 - 1
    low = torch.nn.functional.avg_pool2d(high, 2)
    edit = _tiles(low, 8, 2, 1.0, 1, None, {}, {})
    assert isinstance(edit, CanvasEdit) and edit.out_size == (26, 20)
    t = edit.tiles
    tiles = torch.cat([high[..., y * 2:y * 2 + 8, x * 2:x * 2 + 8] for y in t["ys"] for x in t["xs"]])
    assert torch.allclose(edit.assemble(tiles), high[0], atol=1e-6)


def test_canvas_errors_are_one_line(tmp_path):
    inp = tmp_path / "in.png"
    _rgb(inp)
    with pytest.raises(GenimageError, match="adds no pixels"):
        build_canvas_edit(inp, 32, 3, extend=(0, 0, 0, 0))
    with pytest.raises(GenimageError, match="divides the model"):
        build_canvas_edit(inp, 32, 3, upscale=3)
    with pytest.raises(GenimageError, match="not several"):
        build_canvas_edit(inp, 32, 3, upscale=2, extend=(1, 1, 1, 1))
    result = runner.invoke(app, ["edit", str(inp), "--upscale", "2", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "pixel-space model" in result.output
