"""``genimage export --to diffusers``: the folder loads in diffusers (local files only) and its
UNet + scheduler make the image genimage's sampler makes, for the same seed and timesteps."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from genimage.conditioning.cfg import CFGDenoiser  # noqa: E402
from genimage.conditioning.conditioner import Conditioner  # noqa: E402
from genimage.errors import GenimageError  # noqa: E402
from genimage.interop.export import export_diffusers, read_export_info  # noqa: E402
from genimage.models.config import ModelConfig  # noqa: E402
from genimage.models.io import build_denoiser, load_model, save_model  # noqa: E402
from genimage.models.presets import backbone_config  # noqa: E402
from genimage.samplers import SAMPLERS  # noqa: E402
from genimage.samplers.noise import generators_for_seeds, randn  # noqa: E402


def _model(folder, path: str, prediction: str, classes: int):
    bc = backbone_config("unet", "tiny", image_size=8, channels=1, num_classes=classes)
    mc = ModelConfig(backbone="unet", backbone_config=bc, objective="ddpm", path=path, prediction=prediction,
                     image_size=8, channels=1, num_classes=classes, steps=4)
    torch.manual_seed(1)
    den = build_denoiser(mc)
    with torch.no_grad():  # diffusers zero-initialises conv_out; give the output some signal
        for p in den.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_model(folder, mc, den.network.state_dict())


@pytest.mark.parametrize("path,prediction,classes,guidance", [
    ("vp-linear", "eps", 3, 2.0),
    ("vp-cosine", "v", 0, 1.0),
    ("vp-linear", "x0", 0, 1.0),
    ("linear", "velocity", 3, 2.0),
])
def test_exported_unet_and_scheduler_make_genimages_image(tmp_path, path, prediction, classes, guidance):
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel

    src = _model(tmp_path / "m", path, prediction, classes)
    out = export_diffusers(src, tmp_path / "d")
    info = read_export_info(out)
    assert info["null_class"] == (classes or None) and info["path"] == path
    unet = UNet2DModel.from_pretrained(out, subfolder="unet", local_files_only=True).eval()
    flow = path == "linear"
    sched_cls = FlowMatchEulerDiscreteScheduler if flow else DDIMScheduler
    sched = sched_cls.from_pretrained(out, subfolder="scheduler", local_files_only=True)
    steps = 5
    sched.set_timesteps(steps)
    if flow:
        times = sched.sigmas.double()
    else:
        times = torch.cat([sched.timesteps.double() / (999.0 if path == "vp-linear" else 1000.0),
                           torch.zeros(1, dtype=torch.float64)])

    loaded = load_model(src)
    den = loaded.denoiser
    x_start = randn((1, 1, 8, 8), generators_for_seeds([4]))
    label = 2
    model, cond = den, None
    if classes:
        cond = Conditioner(loaded.config)(labels=[label])
        model = CFGDenoiser(den, guidance)
    ours = SAMPLERS.get("euler" if flow else "ddim")(model, x_start.clone(), times, cond=cond)

    x = x_start.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            if classes:
                both = unet(torch.cat([x, x]), t, class_labels=torch.tensor([label, classes])).sample
                c, u = both.chunk(2)
                out_t = u + guidance * (c - u)
            else:
                out_t = unet(x, t).sample
            x = sched.step(out_t, t, x).prev_sample
    assert ours.shape == x.shape and float(x.abs().max()) > 0.1
    assert (ours - x).abs().max() <= 1e-4 * max(1.0, float(x.abs().max()))


def test_an_unconditional_vp_export_is_a_ddim_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    src = _model(tmp_path / "m", "vp-cosine", "eps", 0)
    out = export_diffusers(src, tmp_path / "d")
    pipe = DiffusionPipeline.from_pretrained(out, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "DDIMPipeline"
    image = pipe(batch_size=1, num_inference_steps=4, eta=0.0, generator=torch.Generator().manual_seed(9),
                 output_type="np").images  # (1, 8, 8, 1) in [0, 1]
    pipe.scheduler.set_timesteps(4)
    times = torch.cat([pipe.scheduler.timesteps.double() / 1000.0, torch.zeros(1, dtype=torch.float64)])
    den = load_model(src).denoiser
    ours = SAMPLERS.get("ddim")(den, randn((1, 1, 8, 8), generators_for_seeds([9])), times)
    ours = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(ours - image).max() <= 1e-4


@pytest.mark.parametrize("what,message", [
    ("latent_text", "cannot be exported"),
    ("dit", "'dit' backbone cannot be exported"),
    ("edm", "cannot be exported"),
    ("coords", "coordinate channels cannot be exported"),
])
def test_what_cannot_be_exported_says_why(tmp_path, tiny_model_dir, what, message):
    if what == "latent_text":
        src = "shapes"
    elif what == "dit":
        src = tiny_model_dir
    elif what == "coords":
        bc = {**backbone_config("unet", "tiny", image_size=8, channels=1), "coord_channels": True}
        mc = ModelConfig(backbone="unet", backbone_config=bc, objective="flow-matching", path="linear",
                         prediction="velocity", image_size=8, channels=1)
        src = save_model(tmp_path / "coords", mc, build_denoiser(mc).network.state_dict())
    else:
        bc = backbone_config("unet", "tiny", image_size=8, channels=1)
        mc = ModelConfig(backbone="unet", backbone_config=bc, objective="edm", path="edm", prediction="edm",
                         image_size=8, channels=1)
        src = save_model(tmp_path / "edm", mc, build_denoiser(mc).network.state_dict())
    with pytest.raises(GenimageError, match=message):
        export_diffusers(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from genimage.cli.main import app

    src = _model(tmp_path / "m", "vp-linear", "eps", 3)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(src), "--to", "diffusers", str(tmp_path / "d")])
    assert res.exit_code == 0 and "DDIMScheduler" in res.output, res.output
    assert (tmp_path / "d" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    res = runner.invoke(app, ["export", str(src), "--to", "diffusers", str(tmp_path / "d")])
    assert res.exit_code == 2 and "not empty" in res.output
    res = runner.invoke(app, ["export", str(src), "--to", "onnx", str(tmp_path / "e")])
    assert res.exit_code == 2 and "only export format is diffusers" in res.output
