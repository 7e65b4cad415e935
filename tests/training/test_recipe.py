"""The folder recipe of ``genimage train --data FOLDER``: what it picks (by measured speed) and
that the CLI prints and applies it."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.training.recipe import CANDIDATES, PHOTO_AUTOENCODER, choose_recipe, measure_step_seconds


def speeds(table):
    """A measure function answering seconds per step from ``{(first block width, bf16): s}``."""
    calls = []

    def measure(backbone, cfg, batch, bf16=False):
        calls.append((cfg["block_out_channels"][0], bf16))
        return table[(cfg["block_out_channels"][0], bf16)]

    measure.calls = calls
    return measure


def test_picks_the_largest_backbone_that_reaches_the_steps_and_stops_measuring_there():
    m = speeds({(32, False): 0.1, (48, False): 0.5, (64, False): 2.0})
    r = choose_recipe(n_images=300, channels=3, image_size=None, budget_minutes=15, measure=m)
    assert r.settings["set"]["block_out_channels"] == [48, 96]  # 15 min / 0.5 s = 1800 >= 1500 steps
    assert r.settings["steps"] == 1800 and m.calls == [(32, False), (48, False), (64, False)]
    assert r.settings["autoencoder"] == str(PHOTO_AUTOENCODER) and r.settings["image_size"] == 32
    assert r.settings["flip"] is True and r.settings["crop"] == "random"
    assert r.settings["views"] == 14  # ceil(4096 / 300)
    assert r.settings["warmup_steps"] == 90 and r.settings["lr_schedule"] == "cosine"
    assert r.settings["ema_decay"] == pytest.approx(1 - 10 / 1800, abs=1e-5)
    assert "0.50 s/step" in r.reasons["backbone"] and "largest" in r.reasons["backbone"]
    fast = speeds({(32, False): 0.1, (48, False): 0.2, (64, False): 0.3})
    assert choose_recipe(n_images=300, channels=3, image_size=None, measure=fast).settings["set"] == CANDIDATES[0][2]


def test_slow_machine_gets_the_smallest_backbone_and_fewer_steps():
    m = speeds({(32, False): 3.0, (48, False): 9.0, (64, False): 20.0})
    r = choose_recipe(n_images=50, channels=3, image_size=None, budget_minutes=10, measure=m)
    assert r.settings["set"]["block_out_channels"] == [32, 64] and r.settings["steps"] == 200
    assert m.calls == [(32, False)] and "smallest" in r.reasons["backbone"]


def test_bf16_only_when_measured_faster():
    slow_bf16 = speeds({(32, False): 0.2, (32, True): 0.5, (48, False): 0.3, (64, False): 0.4})
    r = choose_recipe(n_images=10, channels=3, image_size=None, bf16_supported=True, measure=slow_bf16)
    assert r.settings["bf16"] is False and "bf16 0.50" in r.reasons["bf16"]
    fast_bf16 = speeds({(32, False): 0.4, (32, True): 0.2, (48, True): 0.3, (64, True): 0.45})
    r = choose_recipe(n_images=10, channels=3, image_size=None, bf16_supported=True, measure=fast_bf16)
    assert r.settings["bf16"] is True and (48, False) not in fast_bf16.calls


def test_pixel_space_when_the_autoencoder_does_not_fit():
    m = speeds({(32, False): 0.1, (48, False): 0.1, (64, False): 0.1})
    gray = choose_recipe(n_images=10, channels=1, image_size=None, measure=m)
    assert gray.settings["autoencoder"] is None and "1-channel" in gray.reasons["autoencoder"]
    odd = choose_recipe(n_images=10, channels=3, image_size=18, measure=m)
    assert odd.settings["autoencoder"] is None and odd.settings["image_size"] == 18 and "views" not in odd.settings
    assert "not a multiple of its factor 4" in odd.reasons["autoencoder"]


def test_latent_space_at_any_multiple_of_the_autoencoders_factor():
    m = speeds({(32, False): 0.1, (48, False): 0.1, (64, False): 0.1})
    cfgs = []

    def measure(backbone, cfg, batch, bf16=False):
        cfgs.append((cfg["image_size"], cfg["in_channels"]))
        return m(backbone, cfg, batch, bf16)

    r = choose_recipe(n_images=10, channels=3, image_size=64, measure=measure)
    assert r.settings["autoencoder"] == str(PHOTO_AUTOENCODER) and r.settings["image_size"] == 64
    assert "4x16x16 latents" in r.reasons["autoencoder"] and set(cfgs) == {(16, 4)}  # measured at the latent geometry


def test_the_photo_autoencoder_encodes_and_decodes_at_64_and_128_px():
    import torch

    from genimage.errors import GenimageError
    from genimage.latent.autoencoder import load_autoencoder

    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    img = torch.stack([xs, ys, xs * ys]).unsqueeze(0) * 0.8  # smooth colour ramps
    psnrs = {}
    for size in (32, 64, 128):
        ae = load_autoencoder(PHOTO_AUTOENCODER, image_size=size)
        assert ae.latent_shape == (4, size // 4, size // 4) and ae.config.image_size == size
        x = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            z = ae.model.encode(x)
            y = ae.model.decode(z)
        assert z.shape == (1, 4, size // 4, size // 4)
        psnrs[size] = float(10 * torch.log10(4 / ((x - y) ** 2).mean()))
    # the same content reconstructs as well at 2x and 4x the training size (a broken resize,
    # e.g. latents of the wrong geometry, would fall far below)
    assert psnrs[64] > psnrs[32] - 1 and psnrs[128] > psnrs[32] - 1 and psnrs[32] > 12, psnrs
    same = load_autoencoder(PHOTO_AUTOENCODER, image_size=64)
    assert same.sha256 == ae.sha256  # same weights at every size
    with pytest.raises(GenimageError, match="multiple of 4"):
        load_autoencoder(PHOTO_AUTOENCODER, image_size=30)


def test_measure_step_seconds_is_positive_and_leaves_the_rng_alone():
    import torch

    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    from genimage.models.presets import backbone_config

    cfg = backbone_config("unet", "small", image_size=8, channels=4, overrides=dict(CANDIDATES[-1][2]))
    assert measure_step_seconds("unet", cfg, 4) > 0
    assert torch.equal(torch.rand(1), before)


@pytest.fixture()
def rgb_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        img = Image.new("RGB", (40, 32), (40 * i, 200 - 30 * i, 90))
        img.putpixel((i, i), (255, 255, 255))
        img.save(folder / f"{i}.png")
    return folder


def test_cli_train_on_a_folder_prints_and_applies_the_recipe(rgb_folder, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--data", str(rgb_folder), "--out", str(out), "--steps", "2",
                                   "--max-minutes", "2", "--no-progress", "--no-estimate",
                                   "--latent-cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "recipe: a CPU-sized default" in res.output and "backbone = unet" in res.output
    assert "photo-autoencoder" in res.output and "views = 16" in res.output and "s/step measured" in res.output
    saved = json.loads((out / "recipe.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert run["training"]["steps"] == 2 and run["training"]["max_minutes"] == 2  # given options win
    assert run["training"]["lr"] == saved["settings"]["lr"] == 1e-3
    assert run["training"]["lr_schedule"] == "cosine" and run["training"]["ema_decay"] == saved["settings"]["ema_decay"]
    assert run["model"]["latent_shape"] == [4, 8, 8] and run["model"]["backbone"] == "unet"
    assert run["model"]["backbone_config"]["block_out_channels"] == saved["settings"]["set"]["block_out_channels"]
    assert "96 latents" in res.output  # 16 views x 6 images in the cache


def test_cli_recipe_is_off_when_a_model_option_is_given(rgb_folder, tmp_path):
    res = CliRunner().invoke(app, ["train", "--data", str(rgb_folder), "--out", str(tmp_path / "r"), "--steps", "1",
                                   "--backbone", "dit", "--preset", "tiny", "--image-size", "8", "--no-progress",
                                   "--no-estimate"])
    assert res.exit_code == 0, res.output
    assert "recipe: not used (--backbone, --preset given)" in res.output
    assert not (tmp_path / "r" / "recipe.json").exists()
    bad = CliRunner().invoke(app, ["train", "--data", "builtin:digits", "--out", str(tmp_path / "b"), "--flip"])
    assert bad.exit_code == 2 and "image folders" in bad.output
