"""Numerical faults: NaN/inf steps are skipped and counted, k in a row stop the run, a
diverged state is never checkpointed, and a diverged model cannot write images."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny import tiny_dataset, tiny_model_config, tiny_train_config, train_tiny
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.data.tensor import TensorImageDataset
from genimage.errors import GenimageError
from genimage.models.io import load_model
from genimage.training import checkpoint as ckpt
from genimage.training.guard import DivergenceGuard, TrainingDiverged
from genimage.training.loop import Trainer
from genimage.utils.weights import load_safetensors, save_safetensors

runner = CliRunner()


def _poisoned(n_bad: int, value: float = float("nan")) -> TensorImageDataset:
    data = tiny_dataset()
    images = data.images.clone()
    images[:n_bad] = value
    return TensorImageDataset(images, data.labels)


def test_a_nan_batch_is_skipped_counted_and_resumes_bit_for_bit(tmp_path, capsys):
    data = _poisoned(1)  # one NaN image of 48: the batches that hold it are skipped
    straight = Trainer(tiny_model_config(), tiny_train_config(8, checkpoint_every=2), data, tmp_path / "a")
    history = straight.train()
    assert straight.step == 8 and len(history) == 8
    assert straight.guard.bad_total >= 1 and straight.guard.bad_in_a_row == 0
    assert "skipped: the loss is nan" in capsys.readouterr().err
    assert "skipped" in (tmp_path / "a" / "warnings.txt").read_text()
    assert all(torch.isfinite(t).all() for t in straight.model.training_state().values())
    Trainer(tiny_model_config(), tiny_train_config(4, checkpoint_every=2), data, tmp_path / "b").train()
    resumed = Trainer(tiny_model_config(), tiny_train_config(8, checkpoint_every=2), data, tmp_path / "b", resume=True)
    resumed.train()
    a, b = straight.model.training_state(), resumed.model.training_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.guard.bad_total == straight.guard.bad_total and resumed.history == straight.history


def test_k_bad_steps_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    train_tiny(tmp_path, steps=3)
    good = load_safetensors(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors")
    trainer = Trainer(tiny_model_config(), tiny_train_config(9, max_bad_steps=3), _poisoned(48, float("inf")),
                      tmp_path, resume=True)
    with pytest.raises(TrainingDiverged, match="3 steps in a row were bad.*step-00000003 stays latest"):
        trainer.train()
    assert trainer.guard.bad_in_a_row == 3 and trainer.step == 3
    assert ckpt.find_latest_checkpoint(tmp_path / "checkpoints").name == "step-00000003"
    after = load_safetensors(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors")
    assert all(torch.equal(good[k], after[k]) for k in good)


@pytest.mark.parametrize("poison", [float("nan"), 1e30])
def test_diverged_weights_are_never_checkpointed(tmp_path, poison):
    trainer, _ = train_tiny(tmp_path, steps=3)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(poison)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written|stays latest"):
        trainer.save()
    assert ckpt.find_latest_checkpoint(tmp_path / "checkpoints").name == "step-00000003"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_loss_explosion_is_measured_against_the_early_median():
    g = DivergenceGuard(max_bad_steps=2, explode_factor=1e6)
    history = [0.5, 0.4, 0.45]
    assert g.loss_problem(3.0, history) is None
    assert g.loss_problem(2e6, history) is not None  # > 1e6 x max(median, 1)
    assert g.loss_problem(float("inf"), history) == "the loss is inf"
    assert g.loss_problem(1e30, []) is None  # no reference yet (the first step)
    assert not g.record_bad() and g.record_bad()  # two in a row stop
    g.record_good()
    assert g.bad_in_a_row == 0 and g.bad_total == 2


def test_a_huge_learning_rate_fails_in_one_line_without_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", "builtin:digits", "--preset", "tiny", "--lr", "1e12", "--steps", "30",
                              "--checkpoint-every", "2", "--batch-size", "8", "--no-progress", "--out", str(out)])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "Traceback" not in res.output
    assert ckpt.find_latest_checkpoint(out / "checkpoints") is None


def _scaled_copy(src, dst, scale):
    """A copy of model folder ``src`` whose weights are multiplied by ``scale``."""
    shutil.copytree(src, dst)
    state = load_safetensors(dst / "model.safetensors")
    save_safetensors({k: v * scale if v.is_floating_point() else v for k, v in state.items()}, dst / "model.safetensors")
    return dst


def test_nan_weights_are_refused_at_load_and_huge_outputs_at_generation(tiny_model_dir, tmp_path):
    latest = ckpt.find_latest_checkpoint(tiny_model_dir / "checkpoints")
    nan_model = _scaled_copy(latest, tmp_path / "nan", float("nan"))
    with pytest.raises(GenimageError, match="non-finite weights"):
        load_model(nan_model)
    huge = _scaled_copy(latest, tmp_path / "huge", 1e25)
    res = runner.invoke(app, ["sample", "--model", str(huge), "-n", "2", "--steps", "2", "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "diverged" in res.output and "Traceback" not in res.output
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True
    res = runner.invoke(app, ["sample", "--model", str(nan_model), "-n", "1", "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "non-finite weights" in res.output, res.output


def test_a_direct_family_with_nan_weights_writes_no_image(tmp_path):
    from genimage.data.builtin import load_builtin
    from genimage.families import FAMILIES, load_all_families
    from genimage.models.config import ModelConfig

    load_all_families()
    bc = {**FAMILIES.get("gan").presets["tiny"], "image_size": 8, "channels": 1, "num_classes": 0}
    mc = ModelConfig(backbone="gan", backbone_config=bc, objective="", path="", prediction="", image_size=8,
                     channels=1, num_classes=0, family="gan", training={"data": "builtin:digits"})
    Trainer(mc, tiny_train_config(1, num_sample_images=2), load_builtin("digits", length=16), tmp_path / "g").train()
    bad = _scaled_copy(ckpt.find_latest_checkpoint(tmp_path / "g" / "checkpoints"), tmp_path / "bad", float("inf"))
    res = runner.invoke(app, ["sample", "--model", str(bad), "-n", "1", "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "non-finite weights" in res.output, res.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))
