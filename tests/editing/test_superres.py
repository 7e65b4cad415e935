"""The trained x F upscaler (genimage.families.superres, genimage.editing.superres): training route,
tiling shape contract, record and bit-for-bit replay, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.image_io import pil_to_tensor, tensor_to_pil
from genimage.errors import GenimageError
from genimage.families.superres import degrade, upsample
from genimage.provenance.record import read_record

runner = CliRunner()


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    """A tiny x4 upscaler (16 px window, 4 px tiles) trained for 3 steps through the CLI."""
    out = tmp_path_factory.mktemp("sr_run")
    res = runner.invoke(app, ["train", "--family", "superres", "--preset", "tiny", "--data", "builtin:photos",
                              "--image-size", "16", "--steps", "3", "--batch-size", "4", "--out", str(out),
                              "--no-progress", "--no-estimate", "--fp32"])
    assert res.exit_code == 0, res.output
    return out


def _rgb(path, w, h, seed=0, mode="RGB"):
    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def test_training_records_the_family_and_factor_and_grids_show_triples(sr_run):
    config = json.loads((sr_run / "run.json").read_text())["model"]
    assert config["family"] == "superres" and config["family_config"] == {"factor": 4, "residual_scale": 4.0}
    assert config["backbone_config"]["in_channels"] == 6 and config["objective"] == "flow-matching"
    grid = Image.open(next((sr_run / "samples").iterdir()))
    assert grid.size[0] > 16  # bicubic | model | truth side by side, not one image


def test_degrade_and_upsample_shapes():
    x = torch.rand(2, 3, 16, 12) * 2 - 1
    low = degrade(x, 4)
    assert low.shape == (2, 3, 4, 3)
    assert torch.allclose(low[0, 0, 0, 0], x[0, 0, :4, :4].mean())
    assert upsample(low, 4).shape == x.shape
    with pytest.raises(GenimageError, match="4x4 blocks"):
        degrade(torch.zeros(1, 3, 10, 10), 4)


@pytest.mark.parametrize("size", [(10, 7), (3, 2), (4, 4), (9, 20)])
def test_upscale_output_is_exactly_factor_times_any_input(sr_run, tmp_path, size):
    w, h = size
    src = _rgb(tmp_path / "in.png", w, h, mode="L" if w == 3 else "RGB")  # a grayscale input is read as RGB
    out = tmp_path / "up.png"
    res = runner.invoke(app, ["edit", str(src), "--upscale", "4", "--upscaler", str(sr_run), "--steps", "2",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (4 * w, 4 * h) and Image.open(out).mode == "RGB"


def test_record_replays_bit_for_bit_and_checks_the_input(sr_run, tmp_path):
    src = _rgb(tmp_path / "in.png", 11, 6)
    out = tmp_path / "up.png"
    res = runner.invoke(app, ["edit", str(src), "--model", str(sr_run), "--upscale", "4", "--steps", "4",
                              "--strength", "0.5", "--seed", "5", "-o", str(out)])
    assert res.exit_code == 0 and "(2 of 4 euler steps, consistent" in res.output, res.output
    rec = read_record(out)
    assert rec.edit["method"] == "superres" and rec.edit["factor"] == 4 and rec.seed == 5 and rec.steps == 4
    assert rec.edit["strength"] == 0.5 and rec.edit["consistent"] is True  # the default (BENCHMARKS.md)
    assert rec.edit["canvas"]["input_size"] == [11, 6] and (rec.width, rec.height) == (44, 24)
    res = runner.invoke(app, ["replay", str(out), "--init", str(src)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    other = _rgb(tmp_path / "other.png", 11, 6, seed=1)
    res = runner.invoke(app, ["replay", str(out), "--init", str(other)])
    assert res.exit_code == 2 and "not the input" in res.output
    res = runner.invoke(app, ["replay", str(out)])
    assert res.exit_code == 2 and "--init IMAGE" in res.output


def test_seeds_differ_and_consistent_mode_keeps_block_means(sr_run):
    from genimage.editing.superres import load_upscaler
    from genimage.samplers.noise import generators_for_seeds

    model = load_upscaler(sr_run).model
    low = torch.rand(2, 3, 4, 4) * 1.2 - 0.6
    a = model.upscale(low, generators_for_seeds([0, 1]), steps=2)
    assert a.shape == (2, 3, 16, 16)
    again = model.upscale(low[:1].repeat(2, 1, 1, 1), generators_for_seeds([0, 1]), steps=2)
    assert not torch.equal(again[0], again[1])  # one input, two seeds: two outputs
    b = model.upscale(low, generators_for_seeds([0, 1]), steps=2, consistent=True)
    assert b.shape == a.shape and not torch.equal(a, b)
    # with the residual parametrisation, the projection acts on r = s (x - up): blocks the final clamp
    # left alone average back to the input exactly
    mild = low * 0.3
    c = model.upscale(mild, generators_for_seeds([0, 1]), steps=2, consistent=True)
    free = degrade((c.abs() < 1).float(), 4) == 1
    assert free.sum() >= 8
    assert torch.allclose(degrade(c, 4)[free], mild[free], atol=1e-5)
    # what consistent=True samples with: every clean estimate averages back to the input (DDNM's rule)
    from genimage.editing.known_region import LowResolutionDenoiser

    wrapped = LowResolutionDenoiser(model.denoiser, low, 4)
    pred = wrapped(torch.randn(2, 3, 16, 16), 0.7, {"lowres": upsample(low, 4)})
    assert torch.allclose(degrade(pred.x0.double(), 4), low.double(), atol=1e-5)
    with pytest.raises(GenimageError, match="3 x 4 x 4 low-resolution windows"):
        model.upscale(torch.zeros(1, 3, 8, 8), generators_for_seeds([0]))
    with pytest.raises(GenimageError, match="low-resolution images"):
        model.sample(2)


def test_clear_error_lines(sr_run, tmp_path):
    src = _rgb(tmp_path / "in.png", 8, 8)
    base = ["edit", str(src), "--upscaler", str(sr_run), "-o", str(tmp_path / "x.png")]
    for extra, message in [(["--upscale", "2"], "trained for x4; use --upscale 4"),
                           (["--upscale", "4", "--prompt", "a cat"], "--prompt does not apply"),
                           (["--upscale", "4", "--strength", "1.5"], "--strength must be in (0, 1]"),
                           (["--upscale", "4", "--extend", "2"], "not several"),
                           ([], "--upscaler applies to super-resolution")]:
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2 and message in res.output, (extra, res.output)
        assert len(res.output.strip().splitlines()) == 1
    for args in (["sample", "--model", str(sr_run), "-n", "1", "--out-dir", str(tmp_path / "s")],
                 ["edit", str(src), "--model", str(sr_run), "-o", str(tmp_path / "x.png")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "upscaler, not a generator; use it with genimage edit" in res.output, res.output
    res = runner.invoke(app, ["edit", str(src), "--upscale", "4", "--upscaler", "digits", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "not an upscaler" in res.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    res = runner.invoke(app, ["edit", str(bad), "--upscale", "4", "--upscaler", str(sr_run), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "cannot read the input image" in res.output


def test_bundled_photo_upscaler_works_by_default_on_any_rgb_image(tmp_path):
    from genimage.editing.superres import bundled_upscaler

    if bundled_upscaler(4) is None:
        pytest.skip("the photos-x4 upscaler is not bundled in this checkout")
    src = _rgb(tmp_path / "photo.png", 21, 13)
    out = tmp_path / "sr.png"
    res = runner.invoke(app, ["edit", str(src), "--upscale", "4", "--steps", "2", "-o", str(out)])
    assert res.exit_code == 0 and "photos-x4" in res.output, res.output
    assert Image.open(out).size == (84, 52)
    assert read_record(out).model == "photos-x4"
    res = runner.invoke(app, ["replay", str(out), "--init", str(src)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output


def _to_png(image: torch.Tensor, path):
    tensor_to_pil(image).save(path)
    return path


def _from_png(path) -> torch.Tensor:
    return pil_to_tensor(Image.open(path).convert("RGB"))


def test_bundled_shapes_upscaler_beats_bicubic_on_held_out_scenes_and_tiles_32_to_128(tmp_path):
    """shapes-x4 at its defaults, through the command line, on scenes it never saw: 16 -> 64 px well
    above bicubic's PSNR, and a 32 px input tiled to exactly 128 px."""
    from genimage.data.builtin import load_builtin
    from genimage.metrics.feature_maps import psnr
    from genimage.models.folders import bundled_models

    if "shapes-x4" not in bundled_models():
        pytest.skip("the shapes-x4 upscaler is not bundled in this checkout")
    data = load_builtin("shapes", image_size=64, split="eval", seed=11, length=3)
    gains = []
    for i in range(3):
        x = data[i]["image"]
        low = degrade(x[None], 4)[0]
        src, out = _to_png(low, tmp_path / f"low{i}.png"), tmp_path / f"sr{i}.png"
        res = runner.invoke(app, ["edit", str(src), "--upscale", "4", "--upscaler", "shapes-x4", "--seed", str(i),
                                  "-o", str(out)])
        assert res.exit_code == 0 and "shapes-x4" in res.output, res.output
        o = _from_png(out)
        assert o.shape == x.shape
        bicubic = upsample(_from_png(src)[None], 4)[0]
        gains.append(float(psnr(o[None], x[None]) - psnr(bicubic[None], x[None])))
    assert min(gains) > 2.0, gains
    big = load_builtin("shapes", image_size=128, split="eval", seed=12, length=1)[0]["image"]
    src, out = _to_png(degrade(big[None], 4)[0], tmp_path / "low32.png"), tmp_path / "sr128.png"
    res = runner.invoke(app, ["edit", str(src), "--upscale", "4", "--upscaler", "shapes-x4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (128, 128)
    assert read_record(out).model == "shapes-x4"
