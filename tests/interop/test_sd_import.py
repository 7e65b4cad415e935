"""Stable-Diffusion-format models (diffusers folders, single files) run through genimage.

Every model here is a tiny random SD pipeline built in the test (``sd_tiny.py``) and saved
in the real formats; nothing is downloaded (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sd_tiny import LATENT, write_single_file, write_tiny_sd  # noqa: E402

from genimage.errors import GenimageError  # noqa: E402
from genimage.pipeline import Pipeline, replay  # noqa: E402
from genimage.samplers import make_schedule  # noqa: E402
from genimage.samplers.noise import generators_for_seeds, randn  # noqa: E402

SAMPLERS = ["euler", "heun", "ddim", "dpmpp_2m", "ddpm", "consistency"]


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """``(folder, single_file, genimage Pipeline of the folder)`` of a tiny SD 1.x-style model
    (DDIM scheduler, scaled-linear betas, set_alpha_to_one false, steps_offset 1)."""
    from diffusers import StableDiffusionPipeline

    folder = write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
    dpipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    single = write_single_file(dpipe, folder / "tiny-sd.safetensors")
    return folder, single, Pipeline.from_pretrained(folder)


def _diffusers(folder, scheduler: str = "ddim"):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _start_latents(pipe: Pipeline, seed: int, steps: int) -> torch.Tensor:
    """genimage's starting point for ``seed``: ``sigma(t_0) * eps`` (diffusers gets it as ``latents``)."""
    path = pipe.loaded.denoiser.path
    t0 = make_schedule("discrete", path, steps)[0]
    return float(path.sigma(t0)) * randn((1, 4, LATENT, LATENT), generators_for_seeds([seed]))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_equals_diffusers_stable_diffusion_pipeline(sd, tmp_path, prediction):
    folder, _, pipe = sd
    if prediction != "epsilon":
        folder = write_tiny_sd(tmp_path / "v", prediction=prediction)
        pipe = Pipeline.from_pretrained(folder)
    assert pipe.config.prediction == {"epsilon": "eps", "v_prediction": "v"}[prediction]
    steps, guidance = 6, 4.0
    opts = pipe.options(sampler="ddim", schedule="discrete", steps=steps, guidance=guidance, bf16=False)
    latents = []
    image = pipe(seeds=[7], prompts=["a red cat"], negative="dog", options=opts,
                 callback=lambda d: latents.append(d["x"]))
    ref = _diffusers(folder)
    kw = dict(prompt="a red cat", negative_prompt="dog", num_inference_steps=steps, guidance_scale=guidance,
              latents=_start_latents(pipe, 7, steps))
    ref_latent = ref(output_type="latent", **kw).images
    ref_image = ref(output_type="pt", **kw).images * 2 - 1
    scale = ref_latent.abs().max()
    assert (latents[-1] - ref_latent).abs().max() <= 1e-4 * max(1.0, float(scale))
    assert (image - ref_image.clamp(-1, 1)).abs().max() <= 1e-4
    # the timesteps are the scheduler's own: DDIM's leading spacing with steps_offset 1
    path = pipe.loaded.denoiser.path
    ref.scheduler.set_timesteps(steps)
    fed = path.c_noise(make_schedule("discrete", path, steps)[:-1])
    assert fed.tolist() == ref.scheduler.timesteps.double().tolist()


def test_empty_prompt_is_encoded_and_is_the_unconditional_input(sd):
    _, _, pipe = sd
    enc = pipe.conditioner.text_encoder.encode(["", "a cat"])
    assert enc["text"].shape == (2, 77, 16)
    assert enc["text"][0].abs().sum() > 0  # SD's unconditional input is CLIP("") padded, not zeros
    assert pipe.conditioner.encodes_empty_prompt
    opts = pipe.options(steps=3, guidance=3.0, bf16=False)
    no_negative = pipe(seeds=[1], prompts=["cat"], options=opts)
    empty_negative = pipe(seeds=[1], prompts=["cat"], negative="", options=opts)
    other_negative = pipe(seeds=[1], prompts=["cat"], negative="dog", options=opts)
    assert torch.equal(no_negative, empty_negative)
    assert not torch.equal(no_negative, other_negative)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_and_is_per_seed(sd, sampler):
    _, _, pipe = sd
    opts = pipe.options(sampler=sampler, schedule="karras" if sampler == "heun" else "discrete", steps=3,
                        guidance=2.0, bf16=False)
    both = pipe(seeds=[0, 1], prompts=["cat", "dog"], options=opts)
    alone = pipe(seeds=[1], prompts=["dog"], options=opts)
    assert both.shape == (2, 3, 32, 32) and torch.isfinite(both).all()
    assert torch.equal(both[1:], alone)  # image i depends only on seed i, bit for bit
    assert not torch.equal(both[0], both[1])


def test_discrete_path_interpolates_the_table_between_knots(sd):
    path = sd[2].loaded.denoiser.path
    from diffusers import DDIMScheduler

    abar = DDIMScheduler.from_config(path.scheduler_config).alphas_cumprod.double()
    k = torch.tensor([0.0, 1.0, 500.0, 999.0])
    t = path.time_of_timestep(k)
    assert torch.allclose(path.alpha(t) ** 2, abar[k.long()], rtol=1e-12)
    assert torch.allclose(path.alpha(t) ** 2 + path.sigma(t) ** 2, torch.ones(4, dtype=torch.float64))
    assert float(path.sigma(torch.tensor(0.0))) == 0.0 and float(path.alpha(torch.tensor(0.0))) == 1.0
    mid = torch.linspace(0.01, 0.99, 17, dtype=torch.float64)
    assert torch.allclose(path.t_from_sigma_hat(path.sigma_hat(mid)), mid, atol=1e-9)
    h = 1e-7  # derivatives are those of the interpolation (half-way between knots, where it is smooth)
    mid = path.time_of_timestep(torch.tensor([3.5, 100.5, 480.5, 998.5], dtype=torch.float64))
    for f, df in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        num = (f(mid + h) - f(mid - h)) / (2 * h)
        assert torch.allclose(df(mid), num, rtol=1e-4)


def test_img2img_inpainting_and_outpainting_run(sd, tmp_path):
    from genimage.editing.spec import EditSpec, outpaint_canvas

    _, _, pipe = sd
    opts = pipe.options(steps=4, guidance=2.0, bf16=False)
    src = pipe(seeds=[5], prompts=["cat"], options=opts)
    img2img = pipe(seeds=[6], prompts=["dog"], options=opts, edit=EditSpec(src, 0.5))
    assert img2img.shape == src.shape and not torch.equal(img2img, src)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    inpainted = pipe(seeds=[6], prompts=["dog"], options=opts, edit=EditSpec(src, 1.0, mask))
    keep = mask.expand_as(src) == 0
    assert torch.equal(inpainted[keep], src[keep]) and not torch.equal(inpainted, src)
    canvas, cmask = outpaint_canvas(src, 8, 0, 8, 0)
    out = pipe(seeds=[6], prompts=["dog"], options=opts, edit=EditSpec(canvas, 1.0, cmask, (8, 0, 8, 0)))
    assert out.shape == src.shape and torch.equal(out[cmask.expand_as(out) == 0], canvas[cmask.expand_as(out) == 0])


def test_records_replay_bit_exact_with_the_watermark(sd, tmp_path):
    from genimage.provenance.record import read_record
    from genimage.utils.weights import sha256_file

    folder, single, pipe = sd
    opts = pipe.options(sampler="dpmpp_2m", steps=3, guidance=3.0, bf16=False)
    seeds, prompts = [11, 12], ["a red cat", "dog"]
    images = pipe(seeds=seeds, prompts=prompts, negative="cat", options=opts)
    paths = pipe.save(images, pipe.records(seeds, prompts=prompts, negative="cat", options=opts),
                      [tmp_path / "a.png", tmp_path / "b.png"])
    rec = read_record(paths[1])
    expected = "".join(f"{p}:{sha256_file(folder / p / n)}\n" for p, n in (
        ("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors")))
    import hashlib

    assert rec.model_sha256 == hashlib.sha256(expected.encode()).hexdigest() == pipe.loaded.weights_sha256
    assert rec.model == str(folder.resolve()) and rec.schedule == "discrete" and rec.negative == "cat"
    assert rec.watermark is not None  # 32 px images carry the invisible mark
    result = replay(paths[1])
    assert result.match and result.weights_match and result.max_abs_diff == 0
    # the single file is another model (other sha256) that makes the same pixels
    other = Pipeline.from_pretrained(single)
    assert other.loaded.weights_sha256 == sha256_file(single) != pipe.loaded.weights_sha256
    result = replay(paths[0], model=single)
    assert result.match and not result.weights_match


def test_single_file_and_folder_make_the_same_image(sd):
    folder, single, pipe = sd
    other = Pipeline.from_pretrained(single)
    assert other.config.image_size == pipe.config.image_size == 32
    opts = pipe.options(steps=3, guidance=2.5, bf16=False)
    assert torch.equal(pipe(seeds=[3], prompts=["cat"], options=opts), other(seeds=[3], prompts=["cat"], options=opts))


def test_turbo_style_model_one_step_equals_diffusers_euler(tmp_path):
    folder = write_tiny_sd(tmp_path / "turbo", scheduler="turbo")
    pipe = Pipeline.from_pretrained(folder)
    opts = pipe.options(bf16=False)
    assert (opts.steps, opts.guidance, opts.schedule) == (1, 1.0, "discrete")
    image = pipe(seeds=[2], prompts=["a red cat"], options=opts)
    eps = randn((1, 4, LATENT, LATENT), generators_for_seeds([2]))
    ref = _diffusers(folder, scheduler="own")
    out = ref(prompt="a red cat", num_inference_steps=1, guidance_scale=0.0, latents=eps, output_type="pt").images
    assert (image - (out * 2 - 1).clamp(-1, 1)).abs().max() <= 1e-4


def test_lcm_style_model_defaults_to_consistency_steps(tmp_path):
    folder = write_tiny_sd(tmp_path / "lcm", scheduler="lcm")
    pipe = Pipeline.from_pretrained(folder)
    opts = pipe.options(bf16=False)
    assert (opts.sampler, opts.steps, opts.guidance) == ("consistency", 4, 1.0)
    ts = make_schedule("discrete", pipe.loaded.denoiser.path, 4)
    from diffusers import LCMScheduler

    ref = LCMScheduler.from_config(pipe.config.family_config["scheduler"])
    ref.set_timesteps(4)
    assert pipe.loaded.denoiser.path.c_noise(ts[:-1]).tolist() == ref.timesteps.double().tolist() and ts[-1] == 0
    assert torch.isfinite(pipe(seeds=[0], prompts=["cat"], options=opts)).all()


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


@pytest.mark.parametrize("breakage,message", [
    ("no_tokenizer", "lacks the part(s) tokenizer"),
    ("sdxl_index", "SDXL is not supported"),
    ("sdxl_unet", "SDXL is not supported"),
    ("inpainting_unet", "inpainting / depth / instruct checkpoint) is not supported"),
    ("pickle_unet", "is a pickle file"),
    ("no_unet_weights", "the unet weights are missing"),
])
def test_a_broken_or_unsupported_folder_gives_one_clear_error(sd, tmp_path, breakage, message):
    folder = _copy(sd[0], tmp_path / "m")
    (folder / "tiny-sd.safetensors").unlink()
    index = json.loads((folder / "model_index.json").read_text())
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    if breakage == "no_tokenizer":
        shutil.rmtree(folder / "tokenizer")
    elif breakage == "sdxl_index":
        index.update(_class_name="StableDiffusionXLPipeline", text_encoder_2=["transformers", "CLIPTextModelWithProjection"])
    elif breakage == "sdxl_unet":
        unet_cfg["addition_embed_type"] = "text_time"
    elif breakage == "inpainting_unet":
        unet_cfg["in_channels"] = 9
    elif breakage == "pickle_unet":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
        torch.save({"w": torch.zeros(1)}, folder / "unet" / "diffusion_pytorch_model.bin")
    elif breakage == "no_unet_weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps(unet_cfg))
    with pytest.raises(GenimageError, match=None) as info:
        Pipeline.from_pretrained(folder)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_single_file_errors(sd, tmp_path):
    from safetensors.torch import save_file

    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(GenimageError, match="pickle checkpoint"):
        Pipeline.from_pretrained(ckpt)
    xl = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2),
               "model.diffusion_model.out.2.bias": torch.zeros(2)}, str(xl))
    with pytest.raises(GenimageError, match="SDXL is not supported"):
        Pipeline.from_pretrained(xl)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(GenimageError, match="takes a model folder"):
        Pipeline.from_pretrained(plain)
    lonely = tmp_path / "alone" / "tiny-sd.safetensors"
    lonely.parent.mkdir()
    shutil.copy(sd[1], lonely)
    with pytest.raises(GenimageError, match="carries no configs or tokenizer"):
        Pipeline.from_pretrained(lonely)


def test_cli_generate_edit_and_replay(sd, tmp_path):
    from typer.testing import CliRunner

    from genimage.cli.main import app

    folder, single, _ = sd
    runner = CliRunner()
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["generate", "a red cat", "--model", str(single), "--steps", "2", "--negative", "dog",
                              "--fp32", "-o", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["replay", str(out)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["edit", str(out), "--model", str(folder), "--prompt", "dog", "--strength", "0.5",
                              "--steps", "4", "-o", str(tmp_path / "e.png"), "--device", "cpu"])
    assert res.exit_code == 0 and "img2img" in res.output, res.output
    res = runner.invoke(app, ["generate", "cat", "--model", str(tmp_path / "nope.ckpt")])
    assert res.exit_code == 2


def test_the_web_service_serves_an_imported_model(sd, tmp_path):
    from fastapi.testclient import TestClient

    from genimage.provenance.record import read_record
    from genimage.serve.app import create_app
    from genimage.serve.studio import Studio

    folder = sd[0]
    studio = Studio(default_model="tiny-sd", device="cpu", max_images=2, model_dirs={"tiny-sd": folder})
    client = TestClient(create_app(studio), base_url="http://127.0.0.1:8000")
    res = client.get("/api/generate.png", params={"prompt": "a red cat", "negative": "dog", "seed": 4, "steps": 2},
                     headers={"X-Genimage": "1"})
    assert res.status_code == 200, res.text
    (tmp_path / "s.png").write_bytes(res.content)
    rec = read_record(tmp_path / "s.png")
    assert rec.prompt == "a red cat" and rec.model == str(folder.resolve())
    assert replay(tmp_path / "s.png").match
