"""scripts/distill_two_step.py: recorded trajectories are the teacher's own samples, and the
trained student is a 2-step model folder that generates through the normal pipeline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("distill_two_step", ROOT / "scripts" / "distill_two_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_record_and_train_a_two_step_student(tmp_path):
    from genimage.latent.autoencoder import attached_autoencoder, decode_latents
    from genimage.pipeline import Pipeline

    mod = _script()
    traj = tmp_path / "traj.pt"
    assert mod.main(["record", "--teacher", "shapes", "-n", "6", "--batch", "4", "--out", str(traj), "--seed", "3"]) == 0
    data = torch.load(traj, weights_only=False)
    assert data["z"].shape == data["x_mid"].shape == data["x0"].shape == (6, 4, 8, 8)

    # the recorded end points are what the teacher pipeline generates for the same seeds and prompts
    teacher = Pipeline.from_pretrained("shapes")
    seeds = [3 * 10_000_000 + i for i in range(6)]
    images = teacher(seeds, prompts=data["captions"], options=teacher.options(bf16=False))
    decoded = decode_latents(attached_autoencoder(teacher.loaded.denoiser), data["x0"]).clamp(-1, 1)
    assert (images - decoded).abs().max() < 1e-4

    out = tmp_path / "student"
    assert mod.main(["train", "--trajectories", str(traj), str(traj), "--out", str(out), "--steps", "3", "--batch", "4",
                     "--minutes", "5"]) == 0
    cfg = json.loads((out / "final" / "config.json").read_text())
    assert (cfg["family"], cfg["sampler"], cfg["steps"], cfg["guidance"]) == ("consistency", "ddim", 2, 1.0)
    assert cfg["training"]["steps"] == 3 and cfg["training"]["trajectories"] == 12  # two files joined
    student = Pipeline.from_pretrained(out / "final")
    calls = []
    net = student.loaded.denoiser.network
    handle = net.register_forward_hook(lambda *a: calls.append(1))
    imgs = student([0, 1], prompts=["a red circle", "a blue square"])
    handle.remove()
    assert imgs.shape == (2, 3, 32, 32) and torch.isfinite(imgs).all()
    assert len(calls) == 2  # two network evaluations for the batch: no guidance, two DDIM steps


def test_record_refuses_a_model_without_text(tmp_path, capsys):
    mod = _script()
    assert mod.main(["record", "--teacher", "digits", "-n", "2", "--out", str(tmp_path / "t.pt")]) == 2
    assert "not a text-conditional latent" in capsys.readouterr().err
