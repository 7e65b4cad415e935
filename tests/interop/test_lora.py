"""LoRA fine-tuning with peft: trained on a few captioned images, saved in diffusers' LoRA
layout, merged at generation (recorded, replayed), and it moves samples towards the images."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("peft")

from sd_tiny import LATENT, write_tiny_sd  # noqa: E402

from genimage.errors import GenimageError  # noqa: E402
from genimage.interop.lora import LORA_FILE, parse_lora, train_lora  # noqa: E402
from genimage.pipeline import Pipeline, replay  # noqa: E402


def _captioned_folder(root):
    import numpy as np
    from PIL import Image

    root.mkdir()
    rows = []
    for i in range(4):  # red squares with a blue bar at four heights
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[..., 0] = 220
        arr[8 + i:20 + i, 8:24, 2] = 200
        Image.fromarray(arr).save(root / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": "a red cat"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    folder = write_tiny_sd(tmp / "sd")
    data = _captioned_folder(tmp / "data")
    out = train_lora(folder, data, tmp / "lora", rank=4, steps=30, lr=2e-2, batch_size=4, seed=0, targets="all")
    return folder, data, out


def _final_latents(pipe, seeds, opts):
    lat = []
    images = pipe(seeds=seeds, prompts=["a red cat"] * len(seeds), options=opts, callback=lambda d: lat.append(d["x"]))
    return images, lat[-1]


def test_lora_moves_samples_towards_the_training_images(trained):
    from genimage.editing.spec import load_edit_image
    from genimage.latent.autoencoder import attached_autoencoder

    folder, data, out = trained
    info = json.loads((out / "lora.json").read_text())
    assert info["loss_last10"] < info["loss_first10"]
    base = Pipeline.from_pretrained(folder)
    ae = attached_autoencoder(base.loaded.denoiser)
    with torch.no_grad():
        target = torch.cat([ae.model.encode(load_edit_image(data / f"{i}.png", 32, 3)) for i in range(4)])
    opts = base.options(steps=10, guidance=1.0, bf16=False)
    seeds = list(range(6))

    def distance(latents):  # mean squared distance of each sample's latents to the nearest training image's
        return float(((latents[:, None] - target[None]) ** 2).flatten(2).mean(2).min(1).values.mean())

    before = distance(_final_latents(base, seeds, opts)[1])
    after = distance(_final_latents(Pipeline.from_pretrained(folder).apply_lora(out), seeds, opts)[1])
    assert after < 0.8 * before, (before, after)


def test_the_lora_file_is_what_diffusers_load_lora_weights_reads(trained):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from safetensors import safe_open

    from genimage.samplers import make_schedule
    from genimage.samplers.noise import generators_for_seeds, randn

    folder, _, out = trained
    with safe_open(str(out / LORA_FILE), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    pipe = Pipeline.from_pretrained(folder).apply_lora(out, 0.7)
    opts = pipe.options(sampler="ddim", steps=4, guidance=2.0, bf16=False)
    ours = pipe(seeds=[3], prompts=["a red cat"], options=opts)
    ref = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    ref.scheduler = DDIMScheduler.from_config(ref.scheduler.config)
    ref.set_progress_bar_config(disable=True)
    ref.load_lora_weights(out)
    path = pipe.loaded.denoiser.path
    latents = float(path.sigma(make_schedule("discrete", path, 4)[0])) * randn((1, 4, LATENT, LATENT), generators_for_seeds([3]))
    image = ref(prompt="a red cat", num_inference_steps=4, guidance_scale=2.0, latents=latents, output_type="pt",
                cross_attention_kwargs={"scale": 0.7}).images * 2 - 1
    assert (ours - image.clamp(-1, 1)).abs().max() <= 1e-4


def test_records_and_replay_reapply_the_lora(trained, tmp_path):
    from genimage.provenance.record import read_record
    from genimage.utils.weights import sha256_file

    folder, _, out = trained
    pipe = Pipeline.from_pretrained(folder).apply_lora(out, 0.5)
    opts = pipe.options(steps=3, bf16=False)
    images = pipe(seeds=[1], prompts=["a red cat"], options=opts)
    saved = pipe.save(images, pipe.records([1], prompts=["a red cat"], options=opts), [tmp_path / "a.png"])[0]
    rec = read_record(saved)
    assert rec.lora == [{"path": str((out / LORA_FILE).resolve()), "sha256": sha256_file(out / LORA_FILE), "scale": 0.5}]
    result = replay(saved)
    assert result.match and result.weights_match
    plain = Pipeline.from_pretrained(folder)(seeds=[1], prompts=["a red cat"], options=opts)
    assert not torch.equal(plain, images)


def test_cli_train_lora_and_generate_with_it(trained, tmp_path):
    from typer.testing import CliRunner

    from genimage.cli.main import app
    from genimage.provenance.record import read_record

    folder, data, out = trained
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--lora", "2", "--init-from", str(folder), "--data", str(data),
                              "--out", str(tmp_path / "l"), "--steps", "2", "--no-progress"])
    assert res.exit_code == 0 and (tmp_path / "l" / LORA_FILE).is_file(), res.output
    res = runner.invoke(app, ["generate", "a red cat", "--model", str(folder), "--lora", f"{out}:0.5", "--steps", "2",
                              "-o", str(tmp_path / "g.png"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_record(tmp_path / "g.png").lora[0]["scale"] == 0.5
    res = runner.invoke(app, ["train", "--lora", "2", "--data", str(data), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--lora needs --init-from" in res.output
    res = runner.invoke(app, ["generate", "cat", "--model", str(folder), "--lora", str(tmp_path / "none")])
    assert res.exit_code == 2 and "LoRA weights not found" in res.output


def test_parse_lora_and_bad_inputs(trained, tmp_path):
    assert parse_lora("a/b") == (__import__("pathlib").Path("a/b"), 1.0)
    assert parse_lora("a/b:0.25")[1] == 0.25
    folder, data, _ = trained
    with pytest.raises(GenimageError, match="rank >= 1"):
        train_lora(folder, data, tmp_path / "x", rank=0)
    with pytest.raises(GenimageError, match="no captions"):
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "0.png").write_bytes((data / "0.png").read_bytes())
        train_lora(folder, bare, tmp_path / "y", rank=2, steps=1)


def test_a_lora_of_genimages_own_text_unet(trained, tmp_path):
    _, data, _ = trained
    out = train_lora("shapes", data, tmp_path / "own", rank=2, steps=2, lr=1e-3)
    pipe = Pipeline.from_pretrained("shapes")
    opts = pipe.options(steps=2, bf16=False)
    before = pipe(seeds=[0], prompts=["a red circle"], options=opts)
    after = pipe.apply_lora(out)(seeds=[0], prompts=["a red circle"], options=opts)
    assert not torch.equal(before, after)
    with pytest.raises(GenimageError, match="needs a text-conditional UNet"):
        train_lora("digits", data, tmp_path / "digits", rank=2, steps=1)
