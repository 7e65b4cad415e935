"""Spatial control: control maps, the zero-init and scale-0 contracts, inpainting with control,
training/resume, records and bit-exact replay, and the CLI's one-line errors.

The base is a random tiny latent text-to-image UNet (the bundled shapes autoencoder, 32 px ->
4x8x8 latents, MiniLM text) built here; control models are trained on it for a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.shapes import ShapesDataset
from genimage.editing.control import ControlSpec, hint_from_uint8, load_control_image
from genimage.editing.control_maps import edge_mask, object_masks, scene_control, segmentation, sketch
from genimage.errors import GenimageError
from genimage.metrics.control_accuracy import edge_f1, object_ious
from genimage.models.control import ControlConfig, build_control, controlled_denoiser, load_control, save_control
from genimage.pipeline import Pipeline

runner = CliRunner()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A random tiny latent text-to-image UNet model folder (untrained: the contracts hold for any weights)."""
    from genimage.models.config import ModelConfig
    from genimage.models.io import BUNDLED_DIR, build_denoiser, save_model

    bc = dict(image_size=8, in_channels=4, block_out_channels=[16, 32], layers_per_block=1,
              attention_levels=[False, True], attention_head_dim=16, norm_num_groups=8, text_dim=384,
              max_text_len=16)
    cfg = ModelConfig(backbone="unet", backbone_config=bc, objective="flow-matching", path="linear",
                      prediction="velocity", image_size=32, channels=3, text_encoder="minilm", text_max_length=16,
                      steps=3, guidance=2.0, autoencoder=str(BUNDLED_DIR / "shapes" / "autoencoder"),
                      latent_shape=[4, 8, 8])
    torch.manual_seed(0)
    denoiser = build_denoiser(cfg)
    return save_model(tmp_path_factory.mktemp("tiny_base"), cfg, denoiser.network.state_dict())


@pytest.fixture(scope="module")
def control_run(base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("control_run") / "run"
    res = runner.invoke(app, ["train", "--family", "control", "--base", str(base_dir), "--control", "edges,sketch",
                              "--data", "builtin:shapes", "--out", str(out), "--steps", "2", "--batch-size", "4",
                              "--checkpoint-every", "1", "--lr", "1e-2"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def scene():
    ds = ShapesDataset(length=8, split="eval", seed=1)
    return ds._item(5)


def _write_map(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)
    return path


# ------------------------------------------------------------------ control maps and metrics
def test_edges_lie_on_object_boundaries_and_segmentation_is_exact(scene):
    sc, rgb = scene
    edges = edge_mask(rgb)
    masks = object_masks(sc)
    inside = np.zeros(rgb.shape[:2], bool)
    for m in masks:
        inside |= m >= 0.5
    from scipy import ndimage

    boundary = ndimage.binary_dilation(inside, iterations=2) & ~ndimage.binary_erosion(inside, iterations=2)
    assert edges.sum() > 10 and (edges & ~boundary).sum() == 0
    seg = segmentation(sc)
    assert seg.shape == (32, 32, 3)
    for k, m in enumerate(masks):
        assert np.array_equal(seg[..., k], np.rint(m * 255).astype(np.uint8))
    assert (seg[..., len(masks):] == 0).all()
    assert object_ious(rgb, sc) and min(object_ious(rgb, sc)) > 0.6  # the real scene matches its own masks


def test_sketch_is_a_seeded_wobbly_gappy_version_of_the_edges(scene):
    _, rgb = scene
    edges = edge_mask(rgb)
    a, b, c = sketch(rgb, 1)[..., 0] > 0, sketch(rgb, 1)[..., 0] > 0, sketch(rgb, 2)[..., 0] > 0
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.sum() < edges.sum() and not np.array_equal(a, edges)
    assert edge_f1(a, edges, tolerance=2)["f1"] > 0.7


def test_edge_f1_counts_matches_within_the_tolerance():
    ref = np.zeros((8, 8), bool)
    ref[4, :] = True
    shifted = np.roll(ref, 1, axis=0)
    assert edge_f1(ref, ref)["f1"] == 1.0
    assert edge_f1(shifted, ref, tolerance=1)["f1"] == 1.0
    assert edge_f1(shifted, ref, tolerance=0)["f1"] == 0.0
    assert edge_f1(np.zeros_like(ref), ref)["f1"] == 0.0


# ------------------------------------------------------------------ the model contracts
@pytest.mark.parametrize("variant", ["controlnet", "adapter"])
def test_zero_initialised_control_leaves_the_base_output_unchanged_exactly(base_dir, variant):
    base = Pipeline.from_pretrained(base_dir).loaded
    cfg = ControlConfig(kinds=["edges"], variant=variant, base_sha256=base.weights_sha256,
                        base_backbone_config=dict(base.config.backbone_config))
    module = build_control(cfg)
    module.init_from_base(base.denoiser.network.state_dict())
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.rand(3, generator=g)
    cond = {"text": torch.randn(3, 16, 384, generator=g), "text_mask": torch.ones(3, 16, dtype=torch.bool)}
    hint = (torch.rand(3, 1, 32, 32, generator=g) > 0.8).float()
    with torch.no_grad():
        plain = base.denoiser.raw(x, t, cond)
        controlled = controlled_denoiser(base.denoiser, module, hint).raw(x, t, cond)
        for p in module.parameters():  # any non-zero control must change it (the test can fail)
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        changed = controlled_denoiser(base.denoiser, module, hint).raw(x, t, cond)
    assert torch.equal(plain, controlled)
    assert not torch.allclose(plain, changed)


def test_controlnet_copy_starts_from_the_base_encoder(base_dir):
    base = Pipeline.from_pretrained(base_dir).loaded
    cfg = ControlConfig(kinds=["edges"], base_backbone_config=dict(base.config.backbone_config))
    module = build_control(cfg)
    module.init_from_base(base.denoiser.network.state_dict())
    want = base.denoiser.network.diffusers_model.down_blocks[0].resnets[0].conv1.weight
    assert torch.equal(module.down_blocks[0].resnets[0].conv1.weight, want)


def _perturbed(loaded, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loaded.module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return loaded


def test_scale_zero_is_the_base_and_control_works_with_guidance_and_every_sampler(base_dir, control_run, scene):
    pipe = Pipeline.from_pretrained(base_dir)
    loaded = _perturbed(load_control(control_run / "model", pipe.loaded.weights_sha256))
    hint = hint_from_uint8(scene_control("edges", *scene))
    prompts = ["a red circle above a blue square"] * 2
    for sampler in ("euler", "heun", "dpmpp_2m"):
        opts = pipe.options(sampler=sampler, bf16=False, guidance=2.0)
        pipe.control = None
        plain = pipe([0, 1], prompts=prompts, options=opts)
        pipe.control = ControlSpec(loaded, hint, "edges", 0.0)
        zero = pipe([0, 1], prompts=prompts, options=opts)
        pipe.control = ControlSpec(loaded, hint, "edges", 1.0)
        full = pipe([0, 1], prompts=prompts, options=opts)
        assert torch.equal(plain, zero), sampler
        assert not torch.equal(plain, full), sampler


def test_control_with_inpainting_keeps_the_known_pixels(base_dir, control_run, scene):
    from genimage.editing.spec import EditSpec

    pipe = Pipeline.from_pretrained(base_dir)
    loaded = _perturbed(load_control(control_run / "model", pipe.loaded.weights_sha256))
    image = torch.from_numpy(scene[1]).permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 16:] = 1
    edit = EditSpec(image, 1.0, mask)
    opts = pipe.options(bf16=False)
    plain = pipe([0], prompts=["a red circle"], options=opts, edit=edit)
    pipe.control = ControlSpec(loaded, hint_from_uint8(scene_control("sketch", *scene)), "sketch", 1.0)
    ctl = pipe([0], prompts=["a red circle"], options=opts, edit=edit)
    keep = mask.expand(1, 3, 32, 32) == 0
    assert torch.equal(ctl[keep], image[keep]) and not torch.equal(plain, ctl)


def test_batch_does_not_change_a_controlled_image(base_dir, control_run, scene):
    pipe = Pipeline.from_pretrained(base_dir)
    loaded = _perturbed(load_control(control_run / "model", pipe.loaded.weights_sha256))
    hint = hint_from_uint8(scene_control("edges", *scene))
    pipe.control = ControlSpec(loaded, hint, "edges", 1.0)
    opts = pipe.options(bf16=False)
    three = pipe([0, 1, 2], prompts=["a red circle"] * 3, options=opts)
    one = pipe([1], prompts=["a red circle"], options=opts)
    assert torch.equal(three[1], one[0])


# ------------------------------------------------------------------ training and folders
def test_training_writes_a_folder_naming_the_base_and_resumes_exactly(base_dir, control_run, tmp_path):
    import json

    from genimage.training.control import ControlTrainConfig, train_control
    from genimage.utils.weights import load_safetensors, sha256_file

    cfg = json.loads((control_run / "model" / "config.json").read_text())
    assert cfg["format"] == "genimage-control-1" and cfg["kinds"] == ["edges", "sketch"]
    assert cfg["base_sha256"] == sha256_file(base_dir / "model.safetensors") and cfg["training"]["steps"] == 2
    settings = dict(base=str(base_dir), kinds=["edges", "sketch"], batch_size=4, checkpoint_every=1, lr=1e-2)
    train_control(ControlTrainConfig(steps=2, **settings), tmp_path / "a", log=lambda s: None)
    train_control(ControlTrainConfig(steps=3, **settings), tmp_path / "a", resume=True, log=lambda s: None)
    train_control(ControlTrainConfig(steps=3, **settings), tmp_path / "b", log=lambda s: None)
    a = load_safetensors(tmp_path / "a" / "model" / "model.safetensors")
    b = load_safetensors(tmp_path / "b" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(GenimageError, match="already holds a run"):
        train_control(ControlTrainConfig(steps=3, **settings), tmp_path / "b", log=lambda s: None)


def test_a_control_model_refuses_another_base(control_run):
    folder = control_run / "model"
    with pytest.raises(GenimageError, match="trained for base"):
        load_control(folder, base_sha256="0" * 64)
    res = runner.invoke(app, ["generate", "a red circle", "--model", "shapes", "--control-model", str(folder),
                              "--control", str(folder / "missing.png")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "trained for base" in res.output


def test_train_control_cli_errors(base_dir, tmp_path):
    for extra, message in ((["--control", "edges"], "needs --base"), (["--base", str(base_dir)], "needs --control"),
                           (["--base", str(base_dir), "--control", "edgs"], "unknown control kind"),
                           (["--base", str(base_dir), "--control", "edges,segmentation"], "channels")):
        res = runner.invoke(app, ["train", "--family", "control", "--data", "builtin:shapes",
                                  "--out", str(tmp_path / "x"), *extra])
        assert res.exit_code == 2 and message in res.output, res.output


# ------------------------------------------------------------------ CLI, records, replay
def test_generate_with_control_records_and_replays_bit_for_bit(base_dir, control_run, scene, tmp_path):
    from genimage.provenance.record import read_record

    sk = _write_map(tmp_path / "sketch.png", scene_control("sketch", *scene, seed=3))
    ed = _write_map(tmp_path / "edges.png", scene_control("edges", *scene))
    out = tmp_path / "out.png"
    res = runner.invoke(app, ["generate", "a red circle above a blue square", "--model", str(base_dir),
                              "--control", str(sk), "--control-kind", "sketch", "--control-model",
                              str(control_run / "model"), "--control-scale", "0.7", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rec = read_record(out).control
    assert rec["kind"] == "sketch" and rec["scale"] == 0.7 and len(rec["image_sha256"]) == 64
    res = runner.invoke(app, ["replay", str(out), "--control", str(sk)])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["replay", str(out)])
    assert res.exit_code == 2 and "pass it with --control" in res.output
    res = runner.invoke(app, ["replay", str(out), "--control", str(ed)])
    assert res.exit_code == 2 and "not the control image" in res.output


def test_control_image_errors_are_one_line(base_dir, control_run, scene, tmp_path):
    big = np.kron(scene_control("edges", *scene)[..., 0], np.ones((2, 2), np.uint8))[..., None]
    odd = np.zeros((40, 40, 1), np.uint8)
    wide = np.zeros((32, 64, 1), np.uint8)
    cases = {
        "odd.png": (odd, "edges", "must be square, 32x32 or a multiple"),
        "wide.png": (wide, "edges", "must be square"),
        "colour.png": (scene[1], "edges", "is a colour image, not a line drawing"),
        "seg.png": (segmentation(scene[0]), "segmentation", "takes edges, sketch maps, not 'segmentation'"),
    }
    for name, (array, kind, message) in cases.items():
        path = _write_map(tmp_path / name, array)
        res = runner.invoke(app, ["generate", "a red circle", "--model", str(base_dir), "--control", str(path),
                                  "--control-kind", kind, "--control-model", str(control_run / "model"),
                                  "-o", str(tmp_path / "o.png")])
        assert res.exit_code == 2 and message in res.output and res.output.count("\n") == 1, (name, res.output)
    res = runner.invoke(app, ["generate", "a red circle", "--model", str(base_dir), "--control-scale", "0.5"])
    assert res.exit_code == 2 and "need --control IMAGE" in res.output
    # a multiple of the model's size is box-averaged down to it
    hint = load_control_image(_write_map(tmp_path / "big.png", big), "edges", 32)
    assert hint.shape == (1, 32, 32)
    assert torch.equal(hint, hint_from_uint8(scene_control("edges", *scene)))


def test_control_map_command(tmp_path):
    res = runner.invoke(app, ["control-map", "--shapes-index", "2", "--kind", "segmentation", "-o",
                              str(tmp_path / "seg.png"), "--scene-output", str(tmp_path / "scene.png")])
    assert res.exit_code == 0 and "caption: " in res.output, res.output
    assert np.asarray(Image.open(tmp_path / "seg.png")).shape == (32, 32, 3)
    res = runner.invoke(app, ["control-map", str(tmp_path / "scene.png"), "--kind", "edges", "-o", str(tmp_path / "e.png")])
    assert res.exit_code == 0 and np.asarray(Image.open(tmp_path / "e.png")).ndim == 2
    res = runner.invoke(app, ["control-map", str(tmp_path / "scene.png"), "--kind", "segmentation"])
    assert res.exit_code == 2 and "--shapes-index" in res.output


def test_saved_control_config_round_trips(tmp_path, base_dir):
    base = Pipeline.from_pretrained(base_dir).loaded
    cfg = ControlConfig(kinds=["segmentation"], hint_channels=3, base_model="x", base_sha256=base.weights_sha256,
                        base_backbone_config=dict(base.config.backbone_config), variant="adapter")
    module = build_control(cfg)
    save_control(tmp_path / "c", cfg, module.state_dict())
    loaded = load_control(tmp_path / "c", base.weights_sha256)
    assert loaded.config.kinds == ["segmentation"] and loaded.config.variant == "adapter"
    with pytest.raises(GenimageError, match="channels"):
        ControlConfig(kinds=["edges", "segmentation"], hint_channels=1)


def test_segmentation_control_trains_and_generates(base_dir, tmp_path, scene):
    from genimage.training.control import ControlTrainConfig, train_control

    folder = train_control(ControlTrainConfig(base=str(base_dir), kinds=["segmentation"], variant="adapter", steps=1,
                                              batch_size=2), tmp_path / "seg", log=lambda s: None)
    pipe = Pipeline.from_pretrained(base_dir)
    loaded = _perturbed(load_control(folder, pipe.loaded.weights_sha256))
    assert loaded.config.hint_channels == 3
    pipe.control = ControlSpec(loaded, hint_from_uint8(segmentation(scene[0])), "segmentation")
    assert pipe([0], prompts=["a red circle"], options=pipe.options(bf16=False)).shape == (1, 3, 32, 32)


def test_bundled_control_model_fits_the_bundled_shapes_model(tmp_path):
    """`genimage generate --control sketch.png` works on a fresh clone (bundled weights only)."""
    from genimage.models.control import bundled_control_dir

    if not (bundled_control_dir() / "shapes-control" / "config.json").is_file():
        pytest.skip("no bundled control model in this checkout")
    res = runner.invoke(app, ["control-map", "--shapes-index", "3", "--kind", "sketch", "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "o.png"
    res = runner.invoke(app, ["generate", "a blue square below a green square", "--control", str(tmp_path / "s.png"),
                              "--control-kind", "sketch", "-o", str(out), "--fp32"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["replay", str(out), "--control", str(tmp_path / "s.png")])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
