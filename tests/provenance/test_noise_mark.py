"""Gaussian Shading in the initial noise: the noise stays standard normal with keyed signs,
the generation hook applies it, and inverting the sampler reads it back."""

from __future__ import annotations

import pytest
import torch

from genimage.errors import GenimageError
from genimage.generation import generate
from genimage.provenance import noise_mark as N
from genimage.provenance import watermark as wm
from genimage.samplers.noise import generators_for_seeds, randn

MSG = b"gnim"


def test_shaded_noise_is_standard_normal_with_the_keyed_signs():
    eps = randn((64, 4, 8, 8), generators_for_seeds(range(64)))
    z = N.shade(eps, "k", MSG)
    assert torch.equal(z.abs(), eps.abs())
    m = N.target_bits("k", MSG, (4, 8, 8))
    assert torch.equal((z > 0).to(torch.uint8), m.expand_as(z).to(torch.uint8))
    assert abs(float(m.float().mean()) - 0.5) < 0.1 and not torch.equal(m, N.target_bits("other", MSG, (4, 8, 8)))
    # marginally still N(0, 1): mean 0, variance 1, symmetric quantiles
    assert abs(float(z.mean())) < 0.05 and abs(float(z.var()) - 1) < 0.05
    s = N.score_noise(z, "k", MSG)
    assert (s["agreement"] == 1).all() and (s["bit_accuracy"] == 1).all() and (s["z"] > 15).all()
    fresh = N.score_noise(randn((64, 4, 8, 8), generators_for_seeds(range(100, 164))), "k", MSG)
    assert float(fresh["z"].abs().median()) < 2 and float((fresh["z"] > N.DETECTION_Z).float().mean()) < 0.05
    with pytest.raises(GenimageError, match="does not fit"):
        N.target_bits("k", bytes(40), (4, 8, 8))


def test_images_spread_over_keyed_sign_patterns_are_each_found_with_their_pattern():
    """patterns=M: each image gets one of M keyed sign patterns, chosen by its own noise (the
    same noise picks the same pattern again); scoring against all M finds the right one."""
    eps = randn((64, 4, 8, 8), generators_for_seeds(range(64)))
    z = N.shade(eps, "k", MSG, patterns=8)
    assert torch.equal(z.abs(), eps.abs()) and torch.equal(z, N.shade(eps.clone(), "k", MSG, patterns=8))
    idx = N.pattern_index("k", eps, 8)
    assert len(set(idx.tolist())) >= 6  # spread, not one shared orthant
    assert torch.equal(N.shade(eps, "k", MSG), N.shade(eps, "k", MSG, patterns=1))  # 1 = the original scheme
    # the shared mean of the batch shrinks as the signs are spread
    assert float(z.mean(0).abs().mean()) < 0.6 * float(N.shade(eps, "k", MSG).mean(0).abs().mean())
    s = N.score_noise(z, "k", MSG, patterns=8)
    assert torch.equal(s["pattern"], idx) and (s["agreement"] == 1).all() and (s["bit_accuracy"] == 1).all()
    entry = {"method": N.METHOD, "key_id": wm.key_id(wm.watermark_key()), "message": MSG.hex(), "patterns": 8}
    assert torch.equal(N.apply_entry(eps, entry), N.shade(eps, wm.watermark_key(), MSG, patterns=8))
    with pytest.raises(GenimageError, match="at least 1"):
        N.pattern_index("k", eps, 0)


def test_generation_hook_and_ode_inversion_round_trip(tiny_model_dir):
    """Marked noise through genimage's Euler sampler and back by inversion: the tiny pixel model's
    images carry the message; unmarked images of the same seeds do not."""
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir)
    key = wm.watermark_key()
    entry = {"method": N.METHOD, "key_id": wm.key_id(key), "message": MSG.hex()}
    opts = pipe.options(sampler="euler", steps=24, guidance=1.0)
    seeds, labels = list(range(12)), [None] * 12
    args = dict(seeds=seeds, labels=labels, options=opts)
    marked = generate(pipe.loaded.denoiser, pipe.config, pipe.conditioner, noise_mark=entry, **args)
    plain = generate(pipe.loaded.denoiser, pipe.config, pipe.conditioner, **args)
    assert not torch.equal(marked, plain)
    assert torch.equal(marked, generate(pipe.loaded.denoiser, pipe.config, pipe.conditioner, noise_mark=entry, **args))
    found = N.detect(pipe, marked, message=MSG, steps=24)
    missed = N.detect(pipe, plain, message=MSG, steps=24)
    assert float(found["agreement"].mean()) > 0.8 and (found["z"] > N.DETECTION_Z).all()
    assert float(missed["z"].abs().max()) < 4 and float(missed["agreement"].mean()) < 0.6
    with pytest.raises(GenimageError, match="key id"):
        N.apply_entry(torch.zeros(1, 1, 8, 8), {**entry, "key_id": "0" * 16})


def test_label_search_reads_the_mark_of_guided_class_conditional_samples():
    """The bundled digits model samples with guidance 2 and a label the detector does not know:
    inverting once per class with guidance finds the mark (and mostly the class); every marked
    sample scores above every unmarked sample of the same seeds (64 noise elements: the
    threshold must be calibrated, benchmarks/noise_watermark_pixel.py)."""
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained("digits")
    key = wm.watermark_key()
    entry = {"method": N.METHOD, "key_id": wm.key_id(key), "message": MSG.hex()}
    seeds = list(range(10))
    args = dict(seeds=seeds, labels=seeds, options=pipe.options(bf16=False))
    d = pipe.loaded.denoiser
    marked = generate(d, pipe.config, pipe.conditioner, noise_mark=entry, **args)
    plain = generate(d, pipe.config, pipe.conditioner, **args)
    q = lambda x: ((x + 1) * 127.5).round() / 127.5 - 1  # noqa: E731 - saved as 8-bit
    found = N.detect(pipe, q(marked), message=MSG, label_search=True)
    missed = N.detect(pipe, q(plain), message=MSG, label_search=True)
    assert float(found["z"].min()) > float(missed["z"].max())
    assert float((found["label"] == torch.tensor(seeds)).float().mean()) >= 0.7
    assert float(found["agreement"].mean()) > float(missed["agreement"].mean()) + 0.1


def test_label_search_needs_class_labels():
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained("shapes")  # text-conditioned: no class labels
    with pytest.raises(GenimageError, match="class-conditional"):
        N.detect(pipe, torch.zeros(1, pipe.config.channels, pipe.config.image_size, pipe.config.image_size),
                 label_search=True)


def test_cli_noise_mark_is_recorded_replayed_and_found_by_detect_invert(tmp_path):
    """`sample --noise-mark` records the entry (no key), replay reproduces the image bit for
    bit, and `detect --invert digits` calls the marked samples marked and the unmarked ones not,
    at a threshold calibrated on the model's own unmarked samples."""
    import json

    from typer.testing import CliRunner

    from genimage.cli.main import app
    from genimage.provenance.record import read_record

    run = lambda *a: CliRunner().invoke(app, [str(v) for v in a])  # noqa: E731
    assert run("sample", "--model", "digits", "-n", "4", "--noise-mark", "--out-dir", tmp_path / "mk").exit_code == 0
    assert run("sample", "--model", "digits", "-n", "4", "--out-dir", tmp_path / "un").exit_code == 0
    rec = read_record(tmp_path / "mk" / "0000.png")
    assert rec.noise_mark == {"method": N.METHOD, "key_id": wm.key_id(wm.watermark_key()), "message": rec.noise_mark["message"]}
    assert read_record(tmp_path / "un" / "0000.png").noise_mark is None
    res = run("replay", tmp_path / "mk" / "0001.png")
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    files = [tmp_path / "mk" / f"{i:04d}.png" for i in range(4)] + [tmp_path / "un" / f"{i:04d}.png" for i in range(4)]
    res = run("detect", *files, "--invert", "digits", "--calibrate", "40", "--json")
    assert res.exit_code == 0, res.output
    found = [json.loads(line)["marks"]["noise"]["found"] for line in res.output.splitlines()]
    assert found == [True] * 4 + [False] * 4
    res = run("detect", files[0], "--invert", "shapes", "--calibrate", "20")
    assert res.exit_code == 0 and "noise mark: cannot be read (shapes makes 32x32" in res.output, res.output
    res = run("detect", files[0], "--invert", "digits", "--calibrate", "5")
    assert res.exit_code != 0 and "at least 20" in res.output and "Traceback" not in res.output, res.output


def test_scoring_many_patterns_at_once_matches_scoring_them_one_by_one():
    """best_patterns makes the patterns in chunks and compares them by integer matrix products:
    the same best agreement and index as comparing each ``target_bits`` in turn, across chunks
    and row blocks, and elements signed 0 (not read) are left out of the agreement."""
    signs = torch.randn(5, 3 * 4 * 4).sign()
    signs[3, :20] = 0  # this row reads only 28 elements
    agree, idx = N.best_patterns(signs, "k", MSG, patterns=37, chunk=8, rows=2)
    read = (signs != 0).double()
    each = torch.stack([((signs == N.target_bits("k", MSG, (3, 4, 4), j).flatten().float() * 2 - 1).double()
                         * read).sum(1) / read.sum(1) for j in range(37)])
    assert torch.allclose(agree, each.max(0).values, rtol=0, atol=1e-12)
    assert torch.allclose(each[idx, torch.arange(5)], agree, rtol=0, atol=1e-12)
    marked = N.shade(randn((3, 3, 4, 4), generators_for_seeds(range(3))), "k", MSG, patterns=1000)
    got = N.score_noise(marked, "k", MSG, patterns=1000)
    assert torch.equal(got["pattern"], N.pattern_index("k", randn((3, 3, 4, 4), generators_for_seeds(range(3))), 1000))


def test_a_model_whose_config_sets_noise_mark_marks_by_default_and_the_cli_can_turn_it_off(tiny_model_dir, tmp_path):
    """config.json ``noise_mark: {"patterns": M}`` turns the mark on for every generation of the
    model (recorded with M, replayed bit for bit); ``--no-noise-mark`` turns it off; a model
    without it stays unmarked unless ``--noise-mark``; the detector uses the model's M."""
    import json
    import shutil

    from typer.testing import CliRunner

    from genimage.cli.main import app
    from genimage.models.config import ModelConfig
    from genimage.pipeline import Pipeline
    from genimage.provenance.record import read_record

    marked_dir = tmp_path / "marked-model"
    shutil.copytree(Pipeline.from_pretrained(tiny_model_dir).loaded.folder, marked_dir)
    cfg = json.loads((marked_dir / "config.json").read_text())
    (marked_dir / "config.json").write_text(json.dumps({**cfg, "noise_mark": {"patterns": 16}}))
    assert ModelConfig.load(marked_dir).noise_mark == {"patterns": 16}
    assert "noise_mark" not in ModelConfig.from_dict(cfg).to_dict()  # older configs keep their keys
    pipe = Pipeline.from_pretrained(marked_dir)
    assert pipe.noise_mark["patterns"] == 16 and Pipeline.from_pretrained(tiny_model_dir).noise_mark is None
    run = lambda *a: CliRunner().invoke(app, [str(v) for v in a])  # noqa: E731
    assert run("sample", "--model", marked_dir, "-n", "2", "--out-dir", tmp_path / "on").exit_code == 0
    assert run("sample", "--model", marked_dir, "-n", "2", "--no-noise-mark", "--out-dir", tmp_path / "off").exit_code == 0
    assert run("sample", "--model", tiny_model_dir, "-n", "2", "--out-dir", tmp_path / "plain").exit_code == 0
    on = read_record(tmp_path / "on" / "0001.png").noise_mark
    assert on["patterns"] == 16 and on["method"] == N.METHOD
    assert read_record(tmp_path / "off" / "0001.png").noise_mark is None
    assert read_record(tmp_path / "plain" / "0001.png").noise_mark is None
    res = run("replay", tmp_path / "on" / "0001.png", "--model", marked_dir)
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    res = run("replay", tmp_path / "off" / "0001.png", "--model", marked_dir)
    assert res.exit_code == 0 and "bit-for-bit identical" in res.output, res.output
    with pytest.raises(GenimageError, match="at least 1"):
        N.default_patterns(ModelConfig.from_dict({**cfg, "noise_mark": {"patterns": 0}}))


def test_the_calibration_is_computed_once_and_read_from_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    """The unmarked samples that set the threshold depend only on the model, key, message,
    patterns and sampling settings: the second detection reads their scores from the cache
    (no sampling) and decides the same; another key is calibrated anew."""
    from genimage.pipeline import Pipeline
    from genimage.provenance import noise_calibration as C

    monkeypatch.setenv("GENIMAGE_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real_generate = C.generate
    monkeypatch.setattr(C, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    pipe = Pipeline.from_pretrained(tiny_model_dir)
    images = torch.zeros(2, pipe.config.channels, pipe.config.image_size, pipe.config.image_size)
    first = C.calibrated_detect(pipe, images, calibrate=20)
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "noise_calibration").glob("*.json"))) == 1
    assert C.calibrated_detect(pipe, images, calibrate=20) == first and len(calls) == 1
    C.calibrated_detect(pipe, images, calibrate=20, key="another key")
    assert len(calls) == 2
    for f in (tmp_path / "cache" / "noise_calibration").glob("*.json"):
        f.write_text("not json")  # a damaged cache is recomputed, not an error
    assert C.calibrated_detect(pipe, images, calibrate=20) == first and len(calls) == 3


def test_integer_products_fall_back_to_the_float_product_with_the_same_result(monkeypatch):
    """Where torch has no integer matrix product for this CPU, the float product gives the same
    exact sums (every sum is an integer far below 2**24)."""
    signs = (torch.randint(-1, 2, (7, 3 * 8 * 8))).to(torch.int8)
    fast = N.best_products(signs, "k", MSG, patterns=50, chunk=16)

    def missing(*a, **k):
        raise RuntimeError("no int8 matmul here")

    monkeypatch.setattr(torch, "_int_mm", missing)
    slow = N.best_products(signs, "k", MSG, patterns=50, chunk=16)
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])


def test_the_mark_in_an_imported_sd_model_is_read_back_through_its_vae(tmp_path):
    """An imported Stable-Diffusion-format model (tiny, random weights) marks its latents, and
    detect reads the mark back through the VAE by decoder inversion (the random VAE's encoder
    alone is no inverse), not in the same seeds unmarked."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
    from sd_tiny import write_tiny_sd

    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(str(write_tiny_sd(tmp_path / "sd")))
    opts = pipe.options(guidance=1.0, bf16=False, steps=10)
    seeds, prompts = list(range(6)), [""] * 6
    quantised = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # noqa: E731
    unmarked = quantised(pipe(seeds, prompts=prompts, options=opts))
    pipe.noise_mark = N.record_entry(patterns=16)
    marked = quantised(pipe(seeds, prompts=prompts, options=opts))
    z = {k: N.detect(pipe, x, patterns=16, steps=10, decoder_steps=150, decoder_lr=0.5)["z"]
         for k, x in (("marked", marked), ("unmarked", unmarked))}
    assert float(z["marked"].min()) > float(z["unmarked"].max()) + 1, z
