"""Style transfer (genimage.editing.style): AdaIN's contract, sizes, record and replay, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.editing.style import adain, load_style_autoencoder, mean_std, transfer_style
from genimage.errors import GenimageError
from genimage.provenance.record import read_record

runner = CliRunner()


def _img(path, w, h, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 120 + 60 * seed).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def test_adain_gives_the_style_statistics_and_strength_interpolates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 7, generator=g) * 3 + 1
    y = torch.randn(2, 5, 4, 9, generator=g) * 0.5 - 2
    out = adain(x, *mean_std(y))
    for a, b in zip(mean_std(out), mean_std(y)):
        assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(adain(x, *mean_std(y), strength=0.0), x)
    half = adain(x, *mean_std(y), strength=0.5)
    assert torch.allclose(half, (out + x) / 2, atol=1e-5)


@pytest.mark.parametrize("method", ["pixels", "latent", "decoder"])
def test_output_has_the_content_size_for_any_sizes(method):
    ae = load_style_autoencoder().model
    content = torch.rand(1, 3, 13, 22) * 2 - 1
    style = torch.rand(1, 3, 9, 5) * 2 - 1
    out = transfer_style(content, style, ae, method=method)
    assert out.shape == content.shape and out.abs().max() <= 1
    if method == "pixels":  # pure AdaIN of the RGB channels (up to the clamp)
        mu, _ = mean_std(out)
        assert torch.allclose(mu, mean_std(style)[0], atol=0.05)
    same = transfer_style(content, style, ae, method=method, strength=0.0)
    assert not torch.equal(same, out)


def test_decoder_method_moves_the_statistics_toward_the_style():
    from genimage.metrics.feature_maps import mean_std_distance

    ae = load_style_autoencoder().model
    g = torch.Generator().manual_seed(1)
    content = (torch.rand(1, 3, 32, 32, generator=g) * 0.4 - 0.8)  # dark
    style = (torch.rand(1, 3, 32, 32, generator=g) * 0.4 + 0.4)  # bright
    out = transfer_style(content, style, ae, method="decoder")
    assert float(mean_std_distance(out, style)) < float(mean_std_distance(content, style))


def test_cli_records_and_replays_bit_for_bit(tmp_path):
    content = _img(tmp_path / "c.png", 19, 11, 0)
    style = _img(tmp_path / "s.png", 8, 30, 2, mode="L")
    out = tmp_path / "o.png"
    res = runner.invoke(app, ["edit", str(content), "--style", str(style), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert read_record(tmp_path / "p.png").edit["method"] == "pixels"  # the default (BENCHMARKS.md)
    res = runner.invoke(app, ["replay", str(tmp_path / "p.png"), "--init", str(content), "--style", str(style)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["edit", str(content), "--style", str(style), "--style-strength", "0.7",
                              "--style-method", "decoder", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (19, 11)
    rec = read_record(out)
    assert rec.edit["mode"] == "style" and rec.edit["method"] == "decoder" and rec.edit["strength"] == 0.7
    assert rec.model == "shapes/autoencoder" and len(rec.model_sha256) == 64
    res = runner.invoke(app, ["replay", str(out), "--init", str(content), "--style", str(style)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["replay", str(out), "--init", str(content), "--style", str(content)])
    assert res.exit_code == 2 and "not the style image" in res.output
    res = runner.invoke(app, ["replay", str(out), "--init", str(content)])
    assert res.exit_code == 2 and "--style STYLE" in res.output


def test_clear_error_lines(tmp_path):
    content = _img(tmp_path / "c.png", 8, 8, 0)
    style = _img(tmp_path / "s.png", 8, 8, 1)
    tiny = _img(tmp_path / "t.png", 1, 1, 1)
    base = ["edit", str(content), "--style"]
    for extra, message in [([str(style), "--strength", "0.3"], "--strength does not apply to --style"),
                           ([str(style), "--style-strength", "1.5"], "--style-strength must be in [0, 1]"),
                           ([str(style), "--style-method", "vgg"], "--style-method must be one of"),
                           ([str(tmp_path / "missing.png")], "cannot read the style image"),
                           ([str(tiny)], "too small to have a style"),
                           ([str(style), "--mask", str(style)], "--mask does not apply")]:
        res = runner.invoke(app, base + extra + ["-o", str(tmp_path / "x.png")])
        assert res.exit_code == 2 and message in res.output, (extra, res.output)
        assert len(res.output.strip().splitlines()) == 1
    with pytest.raises(GenimageError, match="channels"):
        transfer_style(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8), method="pixels")
