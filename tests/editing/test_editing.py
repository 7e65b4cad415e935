"""Editing: img2img strength semantics, inpainting that keeps the known pixels exactly with
every sampler, outpainting canvases, records and replay of edits, and the CLI's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.editing.known_region import KnownRegionDenoiser, latent_mask
from genimage.editing.spec import EditSpec, load_mask, outpaint_canvas
from genimage.errors import GenimageError
from genimage.pipeline import Pipeline
from genimage.provenance.record import read_record
from genimage.samplers import SAMPLERS, make_schedule

runner = CliRunner()


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir)


def _input(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _half_mask() -> torch.Tensor:
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    return mask


def test_strength_runs_the_last_steps_of_the_schedule():
    spec = EditSpec(_input(), 0.7)
    assert spec.steps_to_run(16) == 11 and spec.steps_to_run(10) == 7 and EditSpec(_input(), 1.0).steps_to_run(5) == 5
    assert EditSpec(_input(), 0.5).steps_to_run(4) == 2  # no rounding drift at exact products
    with pytest.raises(GenimageError, match="runs no step"):
        EditSpec(_input(), 0.05).steps_to_run(16)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(GenimageError, match="strength must be in"):
            EditSpec(_input(), bad).check(1, 1, 8)


def test_check_names_what_does_not_fit():
    with pytest.raises(GenimageError, match="does not fit"):
        EditSpec(torch.zeros(1, 3, 8, 8)).check(2, 1, 8)
    with pytest.raises(GenimageError, match="give 1 or 2"):
        EditSpec(torch.zeros(3, 1, 8, 8)).check(2, 1, 8)
    with pytest.raises(GenimageError, match="only 0 .keep. and 1"):
        EditSpec(_input(), mask=torch.full((1, 1, 8, 8), 0.5)).check(1, 1, 8)
    EditSpec(torch.zeros(2, 1, 8, 8), mask=_half_mask()).check(2, 1, 8)  # per-image inputs, one mask


@pytest.mark.parametrize("sampler", ["euler", "heun", "ddim", "dpmpp_2m", "ddpm"])
def test_a_fully_kept_region_ends_at_the_known_image_with_every_sampler(pipe, sampler):
    """Prediction-space replacement: with nothing to regenerate, every sampler lands on the
    known image itself, before any pasting."""
    den = pipe.loaded.denoiser
    known = _input(1).expand(2, -1, -1, -1)
    model = KnownRegionDenoiser(den, known, torch.zeros(2, 1, 8, 8))
    times = make_schedule("uniform", den.path, 6)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = SAMPLERS.get(sampler)(model, x, times, cond={"label": torch.tensor([0, 1])}, generator=gens)
    assert torch.allclose(out.float(), known, atol=1e-5)
    # ... while with everything to regenerate it is the model's own sample
    free = SAMPLERS.get(sampler)(KnownRegionDenoiser(den, known, torch.ones(2, 1, 8, 8)), x, times,
                                 cond={"label": torch.tensor([0, 1])}, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    plain = SAMPLERS.get(sampler)(den, x, times, cond={"label": torch.tensor([0, 1])},
                                  generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.allclose(free, plain, atol=1e-5)


def test_img2img_at_full_strength_is_sampling_from_noise_and_low_strength_stays_close(pipe):
    opts = pipe.options(steps=8)
    plain = pipe([4, 5], labels=[0, 1], options=opts)
    image = _input(2)
    full = pipe([4, 5], labels=[0, 1], options=opts, edit=EditSpec(image, 1.0))
    assert torch.equal(full, plain)  # the linear path's t = 1 holds no trace of the input
    dist = {s: float((pipe([4], labels=[0], options=opts, edit=EditSpec(image, s)) - image).abs().mean())
            for s in (0.125, 0.5, 1.0)}
    assert dist[0.125] < dist[0.5] < dist[1.0]
    assert dist[0.125] < 0.3 * dist[1.0], dist


def test_inpainting_keeps_known_pixels_exactly_and_is_per_seed(pipe):
    opts = pipe.options(steps=6, sampler="dpmpp_2m")
    image, mask = _input(5), _half_mask()
    spec = EditSpec(image, 1.0, mask)
    out = pipe([7, 8, 9], labels=[0, 1, 2], options=opts, edit=spec)
    kept = ~mask.bool().expand_as(out)
    assert torch.equal(out[kept], image.expand_as(out)[kept])
    assert not torch.allclose(out[:, :, :, 4:], image.expand(3, -1, -1, -1)[:, :, :, 4:], atol=1e-2)
    singles = torch.cat([pipe([s], labels=[lab], options=opts, edit=spec) for s, lab in ((7, 0), (8, 1), (9, 2))])
    assert torch.equal(out, singles)


def test_latent_mask_regenerates_any_cell_with_a_masked_pixel():
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 3, 5] = 1
    small = latent_mask(m, 2)
    assert small.shape == (1, 1, 2, 2) and small.sum() == 1 and small[0, 0, 0, 1] == 1
    assert torch.equal(latent_mask(m, 8), m)


def test_outpaint_canvas_shrinks_the_input_into_the_box():
    image = torch.ones(1, 3, 16, 16) * 0.5
    canvas, mask = outpaint_canvas(image, 4, 0, 4, 0)  # 8 x 16 box: an 8 x 8 image centred in it
    assert canvas.shape == image.shape and mask.shape == (1, 1, 16, 16)
    assert mask.sum() == 16 * 16 - 8 * 8 and (mask[0, 0, 4:12, 4:12] == 0).all()
    assert torch.allclose(canvas[..., 4:12, 4:12], torch.full((1, 3, 8, 8), 0.5), atol=1e-6)
    for bad in ((8, 0, 8, 0), (0, 0, 0, 0), (-1, 0, 0, 0)):
        with pytest.raises(GenimageError, match="extend"):
            outpaint_canvas(image, *bad)


def test_load_mask_thresholds_white_and_refuses_an_empty_mask(tmp_path):
    arr = np.zeros((16, 16), np.uint8)
    arr[:, 8:] = 200
    Image.fromarray(arr).save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png", 8)
    assert m.shape == (1, 1, 8, 8) and torch.equal(m[0, 0, :, 4:], torch.ones(8, 4)) and m[0, 0, :, :4].sum() == 0
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(GenimageError, match="all black"):
        load_mask(tmp_path / "black.png", 8)


def _save_input(pipe, path):
    img = pipe([11], labels=[1], options=pipe.options(steps=4))[0]
    pipe.save([img], pipe.records([11], [1], options=pipe.options(steps=4)), [path])
    return path


def test_edit_cli_modes_records_and_replay(pipe, tiny_model_dir, tmp_path):
    src = _save_input(pipe, tmp_path / "in.png")
    arr = np.zeros((8, 8), np.uint8)
    arr[2:6, 2:6] = 255
    Image.fromarray(arr).save(tmp_path / "mask.png")
    base = ["edit", str(src), "--model", str(tiny_model_dir), "--label", "2", "--steps", "6"]
    res = runner.invoke(app, base + ["--strength", "0.5", "-o", str(tmp_path / "a.png")])
    assert res.exit_code == 0 and "img2img" in res.output and "(3 of 6 euler steps)" in res.output, res.output
    rec = read_record(tmp_path / "a.png")
    assert rec.edit["mode"] == "img2img" and rec.edit["strength"] == 0.5 and len(rec.edit["image_sha256"]) == 64
    res = runner.invoke(app, base + ["--mask", str(tmp_path / "mask.png"), "-n", "2", "--out-dir", str(tmp_path / "inp")])
    assert res.exit_code == 0 and "inpaint" in res.output, res.output
    res = runner.invoke(app, base + ["--extend", "2,0,2,0", "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 0 and "outpaint" in res.output, res.output
    assert read_record(tmp_path / "o.png").edit["extend"] == [2, 0, 2, 0]

    ok = [(tmp_path / "a.png", []), (tmp_path / "inp" / "0001.png", ["--mask", str(tmp_path / "mask.png")]),
          (tmp_path / "o.png", [])]
    for out, extra in ok:
        res = runner.invoke(app, ["replay", str(out), "--init", str(src)] + extra)
        assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "a.png")])
    assert res.exit_code == 2 and "this image is an edit (img2img); pass --init IMAGE" in res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "inp" / "0000.png"), "--init", str(src)])
    assert res.exit_code == 2 and "pass --mask MASK" in res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "a.png"), "--init", str(tmp_path / "mask.png")])  # another image
    assert res.exit_code == 2 and "is not the input this image was made from" in res.output


@pytest.mark.parametrize("args,message", [
    (["--mask", "M", "--extend", "2"], "not several"),
    (["--extend", "2", "--upscale", "2"], "not several"),
    (["--strength", "0"], "strength must be in"),
    (["--strength", "0.05"], "runs no step"),
    (["--extend", "1,2"], "LEFT,TOP,RIGHT,BOTTOM"),
    (["-n", "2"], "needs --out-dir"),
])
def test_edit_cli_errors(pipe, tiny_model_dir, tmp_path, args, message):
    src = _save_input(pipe, tmp_path / "in.png")
    args = [str(tmp_path / "in.png") if a == "M" else a for a in args]
    res = runner.invoke(app, ["edit", str(src), "--model", str(tiny_model_dir), "--label", "0", "--steps", "6",
                              "-o", str(tmp_path / "x.png")] + args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_edit_cli_without_a_label_is_unconditional_and_needs_a_readable_input(pipe, tiny_model_dir, tmp_path):
    src = _save_input(pipe, tmp_path / "in.png")
    res = runner.invoke(app, ["edit", str(src), "--model", str(tiny_model_dir), "-o", str(tmp_path / "x.png"),
                              "--upscale", "2", "--steps", "4"])
    assert res.exit_code == 0 and read_record(tmp_path / "x.png").label is None, res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "x.png"), "--init", str(src)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output
    (tmp_path / "junk.png").write_bytes(b"not an image")
    res = runner.invoke(app, ["edit", str(tmp_path / "junk.png"), "--model", str(tiny_model_dir), "--label", "0"])
    assert res.exit_code == 2 and "cannot read the input image" in res.output


def test_editing_a_latent_text_model_keeps_pixels_exactly(tmp_path):
    """The bundled shapes model: latents from the encoder, mask pooled to the latent grid,
    kept pixels pasted back exactly after decoding."""
    shapes = Pipeline.from_pretrained("shapes")
    opts = shapes.options(steps=4)
    image = shapes([0], prompts=["a red circle"], options=opts)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 16:, :] = 1
    out = shapes([1, 2], prompts=["a blue square", "a blue square"], options=opts, edit=EditSpec(image, 1.0, mask))
    assert out.shape == (2, 3, 32, 32)
    assert torch.equal(out[:, :, :16], image.expand(2, -1, -1, -1)[:, :, :16])
    assert not torch.allclose(out[0, :, 16:], out[1, :, 16:], atol=1e-2)  # the seed matters where regenerated
    img2img = shapes([1], prompts=["a blue square"], options=opts, edit=EditSpec(image, 0.5))
    assert img2img.shape == (1, 3, 32, 32) and not torch.equal(img2img, image)


def test_resampling_keeps_known_pixels_is_per_seed_and_changes_the_fill(pipe):
    opts = pipe.options(steps=4, sampler="ddim")
    image, mask = _input(6), _half_mask()
    one = pipe([3, 4], labels=[1, 2], options=opts, edit=EditSpec(image, 1.0, mask))
    seen = []
    three = pipe([3, 4], labels=[1, 2], options=opts, edit=EditSpec(image, 1.0, mask, resample=3),
                 callback=lambda info: seen.append(info["i"]))
    assert seen == [0, 1, 2, 3]  # one report per step, with the step's index
    kept = ~mask.bool().expand_as(three)
    assert torch.equal(three[kept], image.expand_as(three)[kept])
    assert not torch.allclose(one, three, atol=1e-3)
    single = pipe([4], labels=[2], options=opts, edit=EditSpec(image, 1.0, mask, resample=3))
    assert torch.equal(single[0], three[1])
    with pytest.raises(GenimageError, match="applies to inpainting"):
        pipe([3], labels=[1], options=opts, edit=EditSpec(image, 0.5, resample=2))
    with pytest.raises(GenimageError, match="resample must be an integer"):
        pipe([3], labels=[1], options=opts, edit=EditSpec(image, 1.0, mask, resample=0))


def test_renoise_draws_from_the_path_transition():
    from genimage.editing.resample import renoise
    from genimage.paths import build_path

    path = build_path("linear")
    x_s = torch.full((4000, 1, 1, 1), 0.5)
    s, t = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    x_t = renoise(path, x_s, s, t, gens)
    a_ts = 0.4 / 0.8  # alpha_t / alpha_s on the linear path (alpha = 1 - t)
    var = 0.6**2 - a_ts**2 * 0.2**2
    assert abs(float(x_t.mean()) - a_ts * 0.5) < 0.03 and abs(float(x_t.var()) - var) < 0.03


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "ddpm"])
def test_upscaled_samples_average_back_to_the_low_resolution_input(pipe, sampler):
    """DDNM with block averaging: every sampler's output has the input's 2x2 block means."""
    from genimage.editing.known_region import LowResolutionDenoiser

    den = pipe.loaded.denoiser
    low = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(8)) * 1.6 - 0.8
    times = make_schedule("uniform", den.path, 6)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    out = SAMPLERS.get(sampler)(LowResolutionDenoiser(den, low, 2), x, times, cond={"label": torch.tensor([0, 2])},
                                generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.allclose(torch.nn.functional.avg_pool2d(out.float(), 2), low, atol=1e-5)
    assert (out - torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest")).abs().max() > 0.05  # detail added


def test_upscale_spec_pipeline_cli_and_replay(pipe, tiny_model_dir, tmp_path):
    low = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    spec = EditSpec.upscale(low, 8)
    assert spec.mode == "upscale" and spec.factor == 2 and spec.image.shape == (1, 1, 8, 8)
    with pytest.raises(GenimageError, match="must divide 8"):
        EditSpec.upscale(torch.zeros(1, 1, 3, 3), 8)
    out = pipe([1, 2], labels=[0, 1], options=pipe.options(steps=4), edit=spec)
    unclamped = torch.nn.functional.max_pool2d(out.abs(), 2) < 0.999  # blocks the final clamp to [-1, 1] left alone
    assert unclamped.sum() >= 4
    assert ((torch.nn.functional.avg_pool2d(out, 2) - low).abs()[unclamped]).max() < 1e-5
    src = _save_input(pipe, tmp_path / "in.png")
    base = ["edit", str(src), "--model", str(tiny_model_dir), "--label", "1", "--steps", "4", "--upscale", "2"]
    res = runner.invoke(app, base + ["-o", str(tmp_path / "up.png"), "--resample", "2"])
    assert res.exit_code == 0 and "upscale" in res.output and "4px -> 8px" in res.output, res.output
    assert read_record(tmp_path / "up.png").edit["factor"] == 2
    res = runner.invoke(app, ["replay", str(tmp_path / "up.png"), "--init", str(src)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, base[:-1] + ["3", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "must be a factor >= 2 that divides" in res.output
    res = runner.invoke(app, ["edit", str(src), "--model", "shapes", "--upscale", "2", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "needs a pixel-space model" in res.output
