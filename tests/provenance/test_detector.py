"""The shipped generated-image detectors: one per built-in domain, picked by image shape, and
better than chance on held-out real images vs fresh samples (the AUCs are in BENCHMARKS.md)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.builtin import load_builtin
from genimage.pipeline import Pipeline
from genimage.provenance.detector import available_detectors, detector_for, load_detector, p_generated


def test_detectors_are_shipped_and_found_by_shape():
    assert available_detectors() == ["digits", "shapes"]
    assert detector_for(1, 8, 8).config.in_channels == 1
    assert detector_for(3, 32, 32).config.image_size == 32
    assert detector_for(3, 16, 16) is None
    assert load_detector("digits").config.class_names == ("real", "generated")


def test_digits_detector_separates_held_out_real_digits_from_new_samples():
    data = load_builtin("digits", split="eval")
    real = torch.stack([data[i]["image"] for i in range(60)])
    pipe = Pipeline.from_pretrained("digits")
    seeds = list(range(200_000, 200_060))
    fake = pipe(seeds, labels=[s % 10 for s in seeds], options=pipe.options(bf16=False))
    fake = ((fake + 1) * 127.5).round() / 127.5 - 1  # as saved
    det = load_detector("digits")
    p_real, p_fake = p_generated(real, det), p_generated(fake, det)
    assert ((p_real >= 0) & (p_real <= 1)).all()
    assert float(p_fake.mean()) > float(p_real.mean()) + 0.4
    assert float((p_fake > 0.5).float().mean()) > 0.8 and float((p_real < 0.5).float().mean()) > 0.7


def test_detect_cli_reports_the_detector(tmp_path):
    res = CliRunner().invoke(app, ["sample", "--model", "digits", "-n", "1", "--out-dir", str(tmp_path)])
    assert res.exit_code == 0
    res = CliRunner().invoke(app, ["detect", str(tmp_path / "0000.png")])
    assert res.exit_code == 0 and "detector digits-detector: p(generated) = " in res.output, res.output
    # it is chosen by shape alone, so the report says what it knows
    assert "trained on real digits images vs samples of the bundled digits model only" in res.output, res.output
