"""Outpainting beyond the canvas: the MultiDiffusion window average, canvas edits that keep
the known pixels exactly and depend only on their seed, the CLI's larger outputs, replay,
and the errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.editing.spec import EditSpec
from genimage.editing.windows import WindowedDenoiser
from genimage.errors import GenimageError
from genimage.models.denoiser import Prediction
from genimage.paths.base import build_path
from genimage.pipeline import Pipeline
from genimage.provenance.record import read_record

runner = CliRunner()


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir)


class _Pointwise(nn.Module):
    """A model whose prediction at a pixel depends only on that pixel (and t): windowing must
    not change it. Records the input shapes it is called with."""

    def __init__(self, window):
        super().__init__()
        self.path = build_path("linear")
        self.window, self.calls = window, []

    def forward(self, x, t, cond=None):
        assert x.shape[-2:] == (self.window, self.window)
        self.calls.append((tuple(x.shape), None if cond is None else tuple(cond["label"].shape)))
        tt = torch.as_tensor(t, dtype=x.dtype).view(-1, 1, 1, 1)
        return Prediction(torch.tanh(x) * (1 - tt), x * tt + 0.1)


@pytest.mark.parametrize("overlap", [0, 2, 5])
def test_the_window_average_of_a_pointwise_model_is_the_model(overlap):
    model = _Pointwise(8)
    wrapped = WindowedDenoiser(model, 8, overlap)
    x = torch.randn(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.7])
    got = wrapped(x, t, {"label": torch.tensor([0, 1])})
    tt = t.view(-1, 1, 1, 1)
    torch.testing.assert_close(got.x0, torch.tanh(x) * (1 - tt), rtol=0, atol=1e-6)
    torch.testing.assert_close(got.eps, x * tt + 0.1, rtol=0, atol=1e-6)
    ys, xs, weights = wrapped.layout(12, 20)
    assert len(model.calls) == 1  # every window of every image in one network call
    assert model.calls[0] == ((2 * len(ys) * len(xs), 3, 8, 8), (2 * len(ys) * len(xs),))
    for starts in (ys, xs):
        assert starts[0] == 0 and all(a + 8 - b >= overlap for a, b in zip(starts, starts[1:]))
    assert bool((weights > 0).all()) and bool((weights < 1).any())  # 20 px in 8 px windows: they overlap
    ys, xs, weights = wrapped.layout(8, 24)
    if overlap == 0:  # windows side by side, each painted alone
        assert xs == [0, 8, 16] and bool((weights == 1).all())


def test_a_model_size_canvas_is_the_plain_model():
    model = _Pointwise(8)
    x = torch.randn(1, 1, 8, 8)
    out = WindowedDenoiser(model, 8, 4)(x, 0.5)
    torch.testing.assert_close(out.x0, torch.tanh(x) * 0.5)


def _canvas(seed=0, width=16):
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    canvas = torch.zeros(1, 1, 8, width)
    canvas[..., width - 8:] = image
    mask = torch.ones(1, 1, 8, width)
    mask[..., width - 8:] = 0
    return canvas, mask


def test_a_canvas_edit_is_larger_keeps_known_pixels_and_depends_only_on_its_seed(pipe):
    canvas, mask = _canvas()
    opts = pipe.options(steps=4)
    edit = EditSpec(canvas, 1.0, mask, window_overlap=4)
    out = pipe([0, 1, 2], labels=[0, 1, 2], options=opts, edit=edit)
    assert out.shape == (3, 1, 8, 16)
    assert torch.equal(out[..., 8:], canvas[..., 8:].expand(3, -1, -1, -1))
    assert not torch.allclose(out[0, :, :, :8], out[1, :, :, :8], atol=1e-3)
    one = pipe([1], labels=[1], options=opts, edit=edit, batch_size=1)
    assert torch.equal(one[0], out[1])
    again = pipe([0, 1, 2], labels=[0, 1, 2], options=opts, edit=edit, batch_size=2)
    assert torch.equal(again, out)
    side_by_side = pipe([0], labels=[0], options=opts, edit=EditSpec(canvas, 1.0, mask, window_overlap=0))
    assert not torch.equal(side_by_side[0], out[0])  # the overlap changes how the windows are painted


def test_canvas_edits_of_the_wrong_shape_are_one_clear_error(pipe):
    canvas, mask = _canvas()
    with pytest.raises(GenimageError, match="mask of shape .* does not fit the"):
        pipe([0], labels=[0], edit=EditSpec(canvas, 1.0, mask[..., :12], window_overlap=4))
    with pytest.raises(GenimageError, match="window overlap must be an integer in 0..7"):
        pipe([0], labels=[0], edit=EditSpec(canvas, 1.0, mask, window_overlap=8))
    with pytest.raises(GenimageError, match="sides of at least the model's 8 px"):
        pipe([0], labels=[0], edit=EditSpec(canvas[..., :6, :], 1.0, mask[..., :6, :], window_overlap=2))
    with pytest.raises(GenimageError, match="for outpainting: give a canvas and its mask"):
        pipe([0], labels=[0], edit=EditSpec(canvas, 1.0, None, window_overlap=2))


def test_the_cli_outpaints_beyond_the_canvas_and_replays(pipe, tiny_model_dir, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray((torch.rand(8, 8, generator=torch.Generator().manual_seed(3)) * 255).byte().numpy()).save(src)
    base = ["edit", str(src), "--model", str(tiny_model_dir), "--label", "1", "--steps", "4", "--no-watermark"]
    res = runner.invoke(app, base + ["--extend", "8,0,0,0", "-o", str(tmp_path / "w.png")])
    assert res.exit_code == 0 and "painted at 16x8 by 8px windows (overlap 4px)" in res.output, res.output
    res = runner.invoke(app, base + ["--extend", "8,0,0,0", "--overlap", "0", "-o", str(tmp_path / "w0.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, base + ["--extend", "8,0,0,0", "--extend-mode", "shrink", "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 0 and "resized 16x8 -> 8x8 -> 16x8" in res.output, res.output
    w, s = Image.open(tmp_path / "w.png"), Image.open(tmp_path / "s.png")
    assert w.size == s.size == (16, 8)
    assert list(w.getdata())[8:16] == list(Image.open(src).getdata())[:8]  # kept pixels exact (no watermark)
    rec = read_record(tmp_path / "w.png").edit
    assert rec["canvas"]["extend_mode"] == "windows" and rec["window_overlap"] == 4 and rec["extend"] == [8, 0, 0, 0]
    assert "extend_mode" not in read_record(tmp_path / "s.png").edit["canvas"]  # as records made before windows
    for out in ("w.png", "w0.png", "s.png"):
        res = runner.invoke(app, ["replay", str(tmp_path / out), "--init", str(src)])
        assert res.exit_code == 0 and "bit-for-bit identical" in res.output, (out, res.output)


@pytest.mark.parametrize("args,message", [
    (["--extend", "4", "--extend-mode", "grow"], "--extend-mode must be one of windows, shrink"),
    (["--extend", "4", "--overlap", "8"], "--overlap must be in 0..7"),
    (["--overlap", "2"], "--overlap applies to outpainting by windows"),
    (["--extend", "-1,0,0,0"], "LEFT,TOP,RIGHT,BOTTOM pixel counts >= 0"),
    (["--extend", "0"], "adds no pixels"),
])
def test_bad_extend_values_are_one_error_line(pipe, tiny_model_dir, tmp_path, args, message):
    src = tmp_path / "in.png"
    Image.new("L", (8, 8), 128).save(src)
    res = runner.invoke(app, ["edit", str(src), "--model", str(tiny_model_dir), "--label", "0", "--steps", "2",
                              "-o", str(tmp_path / "x.png")] + args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_the_latent_shapes_model_paints_a_wider_scene_keeping_the_input():
    shapes = Pipeline.from_pretrained("shapes")
    opts = shapes.options(steps=3)
    scene = shapes([0], prompts=["a red circle"], options=opts)
    canvas = torch.zeros(1, 3, 32, 64)
    canvas[..., 32:] = scene
    mask = torch.ones(1, 1, 32, 64)
    mask[..., 32:] = 0
    out = shapes([1], prompts=["a blue square"], options=opts, edit=EditSpec(canvas, 1.0, mask, window_overlap=16))
    assert out.shape == (1, 3, 32, 64) and torch.equal(out[..., 32:], scene)
    assert float(out[..., :32].std()) > 0.05  # something painted, not a flat fill
    with pytest.raises(GenimageError, match="multiples of the autoencoder's factor 4"):
        shapes([1], prompts=["x"], options=opts, edit=EditSpec(canvas[..., :34], 1.0, mask[..., :34],
                                                                window_overlap=16))
