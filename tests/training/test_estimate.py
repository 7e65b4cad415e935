"""Training estimates (warm-up steps on copies), the memory guard and the --max-minutes budget."""

from __future__ import annotations

import time

import pytest
import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.errors import GenimageError
from genimage.training import estimate as est_mod
from genimage.training.estimate import Budget, TrainingEstimate, check_memory, estimate_training
from genimage.training.loop import Trainer
from tiny import tiny_dataset, tiny_model_config, tiny_train_config


def _trainer(out, **kw):
    return Trainer(tiny_model_config(), tiny_train_config(6, **kw), tiny_dataset(), out)


def test_the_estimate_leaves_the_run_bit_for_bit_unchanged(tmp_path):
    plain = _trainer(tmp_path / "a")
    plain.train()
    probed = _trainer(tmp_path / "b")
    est = estimate_training(probed)
    assert est.seconds_per_step > 0 and est.images_per_s > 0 and est.peak_bytes > 0
    assert [b for b, _, _ in est.probes] == [1, 2]  # an eighth and a quarter of batch 8
    probed.train()
    assert plain.history == probed.history
    for (name, p), (_, q) in zip(plain.model.state_dict().items(), probed.model.state_dict().items()):
        assert torch.equal(p, q), name


def _estimate(peak_gb, per_image_gb, avail_gb, batch=64):
    gb = 1 << 30
    return TrainingEstimate(batch, 2.0, batch / 2.0, int(peak_gb * gb), per_image_gb * gb, int(avail_gb * gb),
                            [(16, 0.5, int((peak_gb - per_image_gb * (batch - 16)) * gb))])


def test_memory_guard_refuses_and_names_a_batch_that_fits():
    est = _estimate(peak_gb=18.4, per_image_gb=0.25, avail_gb=10)
    with pytest.raises(GenimageError, match=r"batch 64 needs about 18.4 GB.*--batch-size (\d+) fits") as err:
        check_memory(est)
    fit = int(err.value.args[0].split("--batch-size ")[1].split()[0])
    assert 16 <= fit < 64 and _estimate(18.4 - 0.25 * (64 - fit), 0.25, 10, 64).peak_bytes <= 0.9 * 10 * (1 << 30)
    assert check_memory(est, override=True).startswith("warning:")
    assert check_memory(_estimate(4, 0.01, 10)) is None


def test_budget_starts_only_steps_that_can_finish_and_keeps_the_grid_time():
    b = Budget(0.01, step_seconds=1.0)  # 0.6 s budget, 1 s steps: none starts
    assert not b.can_start_step()
    b = Budget(1.0, step_seconds=10.0, grid_factor=2.0)  # 60 s budget, 10 s steps, 20 s grid
    assert b.can_start_step() and b.grid_seconds == pytest.approx(20.0)
    b.start -= 25  # 35 s left: a step and the grid fit
    assert b.can_start_step()
    b.start -= 10  # 25 s left: a step would eat the grid's time
    assert not b.can_start_step() and b.can_sample_grid()
    b.observe(4.0)  # measured steps replace the estimate
    assert b.step_seconds == 4.0 and b.can_start_step()
    assert Budget(0).can_start_step()  # no budget
    huge = Budget(0.01, step_seconds=0.01, grid_factor=1000.0)  # a grid longer than the budget is not reserved
    assert huge.can_start_step() and not huge.can_sample_grid()


def test_trainer_with_a_step_longer_than_the_budget_starts_none(tmp_path, capsys):
    tr = _trainer(tmp_path / "r", max_minutes=0.005)
    tr.step_seconds_hint = 5.0
    t0 = time.perf_counter()
    tr.train()
    assert tr.step == 0 and time.perf_counter() - t0 < 5
    assert "final sample grid skipped" in capsys.readouterr().err


def test_cli_prints_the_estimate_and_refuses_what_does_not_fit(tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["train", "--data", "builtin:digits", "--length", "64", "--preset", "tiny", "--steps", "2",
            "--batch-size", "8", "--no-progress"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    assert "estimate:" in result.output and "s/step" in result.output and "2 steps need" in result.output
    monkeypatch.setattr(est_mod, "available_memory_bytes", lambda: 1)  # nothing free
    monkeypatch.setattr(est_mod, "current_rss_bytes", lambda: 1)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "no")])
    assert result.exit_code == 2 and "pass --ignore-memory" in result.output
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "force"), "--ignore-memory"])
    assert result.exit_code == 0 and "warning: batch 8 needs" in result.output
