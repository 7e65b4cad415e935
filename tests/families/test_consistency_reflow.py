"""Consistency models (distillation and training) and reflow / one-step distillation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny import tiny_dataset, tiny_model_config, tiny_train_config

from genimage.errors import GenimageError
from genimage.families.consistency import (
    CT_PRESETS,
    ConsistencyModel,
    boundary_x0_target,
    consistency_settings,
    ct_preset_model_config,
    ct_preset_train_settings,
    discretisation,
    ect_pair_sigmas,
    ict_double_every,
    lognormal_index_probs,
    pseudo_huber,
    sampling_defaults,
    with_boundaries,
)
from genimage.families.reflow import ReflowModel
from genimage.families.teacher import load_teacher, student_config_from_teacher
from genimage.models.io import load_model
from genimage.paths import build_path
from genimage.samplers.noise import generators_for_seeds
from genimage.training.loop import Trainer


def _student(family: str, teacher, **fc):
    defaults = {"consistency": dict(sampler="consistency", steps=1, guidance=1.0),
                "reflow": dict(sampler="euler", steps=1, guidance=1.0)}[family]
    return student_config_from_teacher(str(teacher), family, fc, **defaults)


def test_consistency_function_is_identity_at_time_zero(tiny_model_dir):
    model = ConsistencyModel(_student("consistency", tiny_model_dir))
    x = torch.randn(3, 1, 8, 8)
    out = model.consistency(x, torch.zeros(3, dtype=torch.float64), {"label": torch.tensor([0, 1, -1])})
    assert torch.equal(out, x)  # boundary condition f(x, 0) = x holds exactly


def test_discretisation_and_lognormal_weights():
    path = build_path("linear")
    t = discretisation(path, 10)
    assert len(t) == 11 and t[0] == 1.0 and t[-1] == 0.0 and bool((t[:-1] > t[1:]).all())
    p = lognormal_index_probs(path, t)
    assert p.shape == (10,) and abs(float(p.sum()) - 1) < 1e-9 and bool((p >= 0).all())
    # iCT's lognormal (mean -1.1) puts most mass on intermediate noise, little on the extremes
    assert p[3:8].sum() > p[:2].sum()


def test_pseudo_huber_is_zero_for_equal_inputs_and_grows():
    a = torch.zeros(2, 1, 8, 8)
    assert torch.allclose(pseudo_huber(a, a), torch.zeros(2))
    assert bool((pseudo_huber(a, a + 0.1) > pseudo_huber(a, a + 0.01)).all())


def _fixed_batch_losses(model, batch, steps: int, lr: float) -> list[float]:
    """Losses of ``steps`` updates on one batch with the same noise and times every step."""
    import contextlib

    from genimage.families.base import StepContext

    opts = model.configure_optimizers(lr, 0.0)
    device = next(model.parameters()).device  # the trainer's (CUDA where there is one)
    batch = {"image": batch["image"].to(device), "cond": {k: v.to(device) for k, v in batch["cond"].items()}}
    out = []
    for i in range(steps):
        ctx = StepContext(optimizers=opts, generator=torch.Generator().manual_seed(0), step=0,
                          backward=lambda loss: loss.backward(), clip=lambda p: None,
                          autocast=contextlib.nullcontext, cond_drop_prob=0.0)
        out.append(model.training_step(batch, ctx)["loss"])
    return out


def _digits_batch(n: int = 16) -> dict:
    from genimage.data.builtin import load_builtin

    ds = load_builtin("digits")
    items = [ds[i] for i in range(n)]
    return {"image": torch.stack([it["image"] for it in items]),
            "cond": {"label": torch.tensor([it["label"] for it in items])}}


def test_distillation_starts_from_teacher_and_its_loss_falls_on_a_fixed_batch(tmp_path):
    mc = _student("consistency", "digits", intervals=8)  # the bundled digits flow is the teacher
    trainer = Trainer(mc, tiny_train_config(1, checkpoint_every=0), tiny_dataset(), tmp_path)
    ref = load_model("digits").denoiser.network.state_dict()
    assert all(torch.equal(v.cpu(), ref[k]) for k, v in trainer.model.network.state_dict().items())
    losses = _fixed_batch_losses(trainer.model, _digits_batch(), 12, 1e-3)
    assert losses[-1] < losses[0] * 0.7, losses


@pytest.mark.parametrize("schedule", ["ict", "ect"])
def test_consistency_training_loss_falls_on_a_fixed_batch(schedule):
    mc = dataclasses.replace(tiny_model_config(classes=10), family="consistency", objective="consistency-training",
                             sampler="consistency", family_config={"mode": "training", "schedule": schedule})
    torch.manual_seed(0)
    losses = _fixed_batch_losses(ConsistencyModel(mc), _digits_batch(), 12, 2e-3)
    assert losses[-1] < losses[0] * 0.95, losses


def test_ict_stage_length_and_ect_mapping():
    # iCT Eq. 8: K' = floor(K / (log2(s1 / s0) + 1)); 10 -> 1280 doubles 7 times, so 8 stages
    assert ict_double_every(3000, 10, 1280) == 375 and ict_double_every(3000, 10, 640) == 428
    sigma = torch.tensor([0.01, 0.3, 1.0, 5.0, 80.0], dtype=torch.float64)
    assert torch.equal(ect_pair_sigmas(sigma, 0), torch.zeros(5))  # stage 0: target = clean image
    gaps = [sigma - ect_pair_sigmas(sigma, a) for a in range(4, 8)]
    assert all(bool(((g > 0) & (g <= sigma)).all()) for g in gaps)
    for a, b in zip(gaps, gaps[1:]):  # once r > 0, every stage halves t - r
        assert torch.allclose(b / a, torch.full_like(a, 0.5))


def test_consistency_settings_defaults_and_errors():
    ect = consistency_settings({"mode": "training", "total_steps": 700})
    assert (ect.schedule, ect.weighting, ect.p_mean, ect.p_std) == ("ect", "uniform", 0.0, 1.5)
    assert ect.double_every == 100 and [ect.ect_stage(k) for k in (0, 99, 100, 650, 10**6)] == [0, 0, 1, 6, 6]
    ict = consistency_settings({"mode": "training", "schedule": "ict", "double_every": 5})
    assert (ict.weighting, ict.p_mean) == ("t", -1.1) and [ict.intervals(k) for k in (0, 5, 10, 10**4)] == [10, 20, 40, 640]
    assert consistency_settings({"teacher": "digits"}).weighting == "t"  # distillation unchanged
    for bad in ({"schedule": "cd"}, {"weighting": "edm"}, {"intervals_start": 0}, {"intervals_start": 20, "intervals_end": 10},
                {"p_std": 0}, {"double_every": 0}, {"total_steps": "many"}, {"mode": "teach"}):
        with pytest.raises(GenimageError):
            consistency_settings({"mode": "training", **bad})


def test_ect_starts_as_denoising_and_narrows_the_gap():
    mc = dataclasses.replace(tiny_model_config(classes=10), family="consistency", objective="consistency-training",
                             sampler="consistency", family_config={"mode": "training", "double_every": 10})
    model = ConsistencyModel(mc)
    gen = torch.Generator().manual_seed(0)
    t0, s0, info0 = model._times(256, 0, gen)
    assert torch.equal(s0, torch.zeros(256)) and bool((t0 > 0).all() & (t0 < 1).all()) and info0["stage"] == 0
    t6, s6, info6 = model._times(256, 60, gen)
    assert info6["stage"] == 6 and bool((s6 < t6).all()) and bool((s6 > 0).any())
    assert float(((t6 - s6) / t6).median()) < 0.1  # 1 / 2^6 of the gap at stage 6
    assert torch.equal(model._weight(t6, s6), torch.ones(256))  # ECT's default weighting is uniform


def test_ct_tiny_preset_builds_a_valid_recipe():
    from genimage.models.backbones.unet import UNetConfig
    from genimage.training.loop import TrainConfig

    assert "ct-tiny" in CT_PRESETS
    mc = ct_preset_model_config("ct-tiny", image_size=8, channels=1, num_classes=10, overrides={"dropout": 0.1})
    assert mc.family == "consistency" and mc.path == "linear" and mc.prediction == "velocity"
    assert mc.backbone == "unet" and mc.backbone_config["dropout"] == 0.1 and mc.backbone_config["num_classes"] == 10
    UNetConfig(**mc.backbone_config)  # geometry and group sizes are consistent
    settings = consistency_settings(mc.family_config)
    tc = TrainConfig(**ct_preset_train_settings("ct-tiny"))
    tc.validate()
    # the schedule runs through all its stages within the recipe's steps
    assert settings.schedule == "ect" and settings.ect_stage(tc.steps - 1) == 6
    with pytest.raises(GenimageError, match="ct-tiny"):
        ct_preset_model_config("ct-huge", image_size=8, channels=1)
    with pytest.raises(GenimageError, match="schedule"):
        ct_preset_model_config("ct-tiny", image_size=8, channels=1, family_config={"schedule": "x"})


def test_consistency_training_without_teacher_resumes_exactly(tmp_path):
    mc = dataclasses.replace(tiny_model_config(), family="consistency", objective="consistency-training",
                             sampler="consistency", steps=2,
                             family_config={"mode": "training", "schedule": "ict", "double_every": 2})
    straight = Trainer(mc, tiny_train_config(6), tiny_dataset(), tmp_path / "a")
    straight.train()
    first = Trainer(mc, tiny_train_config(3), tiny_dataset(), tmp_path / "b")
    first.train()
    resumed = Trainer(mc, tiny_train_config(6), tiny_dataset(), tmp_path / "b", resume=True)
    resumed.train()
    a, b = straight.model.network.state_dict(), resumed.model.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.last_metrics["intervals"] == 40.0  # 10 -> 20 -> 40 intervals, doubling every 2 steps
    model = straight.sampling_model()
    images = model.sample(4, [0, 1, 2, 0], generators_for_seeds(range(4)))
    assert images.shape == (4, 1, 8, 8) and bool(images.abs().le(1).all())
    assert model.nfe_per_sample == 2


def test_reflow_pool_round_trips_and_training_straightens_on_its_pairs(tmp_path):
    mc = _student("reflow", "digits", pairs=64, teacher_steps=8)
    trainer = Trainer(mc, tiny_train_config(40, lr=2e-3, checkpoint_every=0, warmup_steps=0, cond_drop_prob=0.0),
                      tiny_dataset(), tmp_path)
    model = trainer.model
    assert model.pool_sample.abs().sum() > 0  # pool solved by the teacher before step 0
    state = model.training_state()
    fresh = ReflowModel(mc)
    fresh.load_training_state(state)
    assert torch.equal(fresh.pool_sample, model.pool_sample.cpu()) and torch.equal(fresh.pool_label, model.pool_label.cpu())

    def one_step_error() -> float:  # one Euler step from the pool's noise vs the teacher's sample
        with torch.no_grad():
            v = model.denoiser.raw(model.pool_noise, torch.ones(64, dtype=torch.float64),
                                   {"label": model.pool_label})
        return float((model.pool_noise - v - model.pool_sample).pow(2).mean())

    before = one_step_error()
    for _ in range(40):
        trainer.train_step()
    assert one_step_error() < before


def test_distill_trains_only_at_time_one(tiny_model_dir):
    model = ReflowModel(_student("reflow", tiny_model_dir, distill=True, pairs=8))
    assert model.distill and model.pool_size == 8


def test_students_refuse_bad_teachers_and_paths(tiny_model_dir, tmp_path):
    with pytest.raises(GenimageError, match="--teacher"):
        load_teacher(dataclasses.replace(tiny_model_config(), family="reflow"), torch.device("cpu"))
    with pytest.raises(GenimageError, match="linear path"):
        ConsistencyModel(dataclasses.replace(tiny_model_config(path="vp-cosine", prediction="eps"), family="consistency"))
    with pytest.raises(GenimageError, match="not found"):
        student_config_from_teacher(str(tmp_path / "nope"), "reflow", {})


def test_cli_ct_preset_is_a_whole_recipe(tmp_path):
    """`--preset ct-tiny` picks the UNet, the ECT schedule and the recipe's trainer settings;
    explicit options still win, and a text-conditional CT preset is refused with a clear error."""
    import json

    from typer.testing import CliRunner

    from genimage.cli.main import app

    runner = CliRunner()
    run = tmp_path / "ct"
    res = runner.invoke(app, ["train", "--family", "consistency", "--preset", "ct-tiny", "--data", "builtin:digits",
                              "--out", str(run), "--steps", "2", "--batch-size", "8", "--lr", "5e-4", "--no-progress"])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["backbone"] == "unet" and info["model"]["family_config"]["schedule"] == "ect"
    train = info["training"]
    assert (train["steps"], train["lr"], train["ema_decay"], train["cond_drop_prob"]) == (2, 5e-4, 0.995, 0.0)
    res = runner.invoke(app, ["train", "--family", "consistency", "--preset", "ct-tiny", "--data", "builtin:shapes",
                              "--length", "8", "--cond", "text", "--out", str(tmp_path / "x"), "--steps", "1"])
    assert res.exit_code == 2 and "ct-tiny" in res.output


def test_multistep_segments_and_boundaries():
    two = consistency_settings({"teacher": "digits", "segments": 2})
    t = torch.tensor([1.0, 0.7, 0.5, 0.3, 1e-3], dtype=torch.float64)
    assert two.segment_start(t).tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]  # a boundary time belongs to the segment below
    assert torch.equal(consistency_settings({"teacher": "digits"}).segment_start(t), torch.zeros(5))
    grid = with_boundaries(discretisation(build_path("linear"), 18), 4)
    assert all(b in grid.tolist() for b in (0.25, 0.5, 0.75)) and bool((grid[:-1] > grid[1:]).all())
    assert grid[0] == 1.0 and grid[-1] == 0.0
    with pytest.raises(GenimageError, match="segments"):
        consistency_settings({"teacher": "digits", "segments": 0})
    assert sampling_defaults({"teacher": "digits", "segments": 2})["sampler"] == "ddim"
    assert sampling_defaults({"teacher": "digits", "segments": 3})["steps"] == 3
    assert sampling_defaults({"teacher": "digits"})["sampler"] == "consistency"


def test_uniform_grid_is_equally_spaced_in_path_time_and_checked():
    grid = discretisation(build_path("linear"), 18, "uniform")
    assert grid[0] == 1.0 and grid[-1] == 0.0 and len(grid) == 19
    assert torch.allclose(grid[:-1] - grid[1:], torch.full((18,), 1 / 18, dtype=torch.float64))
    assert consistency_settings({"teacher": "digits", "grid": "uniform"}).grid == "uniform"
    assert consistency_settings({"teacher": "digits"}).grid == "karras"
    with pytest.raises(GenimageError, match="grid"):
        consistency_settings({"teacher": "digits", "grid": "cosine"})


def test_distillation_pairs_are_adjacent_points_of_the_chosen_grid():
    mc = _student("consistency", "digits", intervals=6, grid="uniform", segments=2)
    model = ConsistencyModel(mc)
    t, s, info = model._times(256, 0, torch.Generator().manual_seed(0))
    assert info["intervals"] == 6
    assert torch.allclose(t - s, torch.full((256,), 1 / 6, dtype=torch.float64))
    assert set(torch.round(t * 6).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}


def test_boundary_target_is_exact_on_a_straight_trajectory_and_classic_at_zero():
    """On the trajectory of one data point, x_u = (1 - u) x0 + u eps, the exact x0 estimate at
    s carried to the segment start and inverted from t gives back x0 (Heek et al. 2024, Alg. 1)."""
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    t = torch.tensor([0.9, 0.8, 0.6, 0.55], dtype=torch.float64)
    s = torch.tensor([0.7, 0.5, 0.55, 0.5], dtype=torch.float64)
    b = torch.full((4,), 0.5, dtype=torch.float64)
    at = lambda u: ((1 - u).view(-1, 1, 1, 1) * x0.double() + u.view(-1, 1, 1, 1) * eps.double()).float()  # noqa: E731
    out = boundary_x0_target(at(t), t, at(s), s, x0, b)
    assert torch.allclose(out, x0, atol=1e-5)
    wrong = boundary_x0_target(at(t), t, at(s), s, x0 + 0.1, b)
    assert not torch.allclose(wrong, x0, atol=1e-2)
    zero = torch.zeros(4, dtype=torch.float64)
    assert torch.equal(boundary_x0_target(at(t), t, at(s), s, x0 + 0.1, zero), x0 + 0.1)  # classic target


def test_multistep_distillation_loss_falls_and_samples_with_ddim(tmp_path):
    mc = student_config_from_teacher("digits", "consistency", {"intervals": 8, "segments": 2},
                                     **sampling_defaults({"teacher": "digits", "segments": 2}))
    assert (mc.sampler, mc.steps) == ("ddim", 2)
    model = Trainer(mc, tiny_train_config(1, checkpoint_every=0), tiny_dataset(), tmp_path).model
    losses = _fixed_batch_losses(model, _digits_batch(), 12, 1e-3)
    assert losses[-1] < losses[0] * 0.7, losses


def test_heun_teacher_step_is_closer_to_the_exact_ode_than_euler():
    """A Heun step of the digits teacher lands nearer to a 64-step Euler solution of the same
    interval than one Euler step; where s = 0 it is the Euler step."""
    teacher = load_teacher(_student("consistency", "digits", teacher_guidance=1), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8, generator=gen)
    cond = {"label": torch.arange(8)}
    t, s = torch.full((8,), 0.9, dtype=torch.float64), torch.full((8,), 0.4, dtype=torch.float64)
    ref = x
    grid = torch.linspace(0.9, 0.4, 65, dtype=torch.float64)
    for a, b in zip(grid[:-1], grid[1:]):
        ref = teacher.step(ref, a.expand(8), b.expand(8), cond)
    err = lambda y: float((y - ref).pow(2).mean())  # noqa: E731
    assert err(teacher.step(x, t, s, cond, "heun")) < 0.5 * err(teacher.step(x, t, s, cond, "euler"))
    zero = torch.zeros(8, dtype=torch.float64)
    assert torch.equal(teacher.step(x, t, zero, cond, "heun"), teacher.step(x, t, zero, cond, "euler"))
    with pytest.raises(GenimageError, match="teacher_solver"):
        consistency_settings({"teacher": "digits", "teacher_solver": "rk4"})


@pytest.mark.parametrize("schedule", ["ict", "ect"])
def test_multistep_consistency_training_keeps_pairs_inside_a_segment(schedule):
    fc = {"mode": "training", "schedule": schedule, "segments": 2, "double_every": 1}
    mc = dataclasses.replace(tiny_model_config(classes=10), family="consistency", objective="consistency-training",
                             sampler="ddim", steps=2, family_config=fc)
    torch.manual_seed(0)
    model = ConsistencyModel(mc)
    t, s, _ = model._times(512, 6, torch.Generator().manual_seed(0))
    b = model.settings.segment_start(t)
    assert bool((t > s).all() & (s >= b).all()) and bool((b == 0.5).any() & (b == 0).any())
    losses = _fixed_batch_losses(model, _digits_batch(), 12, 2e-3)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_teacher_substeps_walk_the_interval_in_equal_steps_and_are_checked():
    """``teacher_substeps = k`` replaces the teacher's one step per grid interval by k equal
    steps: the same points as the grid refined k times (per sample, any t > s)."""
    teacher = load_teacher(_student("consistency", "digits", teacher_guidance=1), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=gen)
    cond = {"label": torch.tensor([3, 7])}
    t, s = torch.tensor([0.9, 0.5], dtype=torch.float64), torch.tensor([0.6, 0.0], dtype=torch.float64)
    assert torch.equal(teacher.walk(x, t, s, cond), teacher.step(x, t, s, cond))
    by_hand = x
    for j in range(3):
        by_hand = teacher.step(by_hand, t + (s - t) * j / 3, t + (s - t) * (j + 1) / 3, cond)
    walked = teacher.walk(x, t, s, cond, substeps=3)
    assert torch.allclose(walked, by_hand, atol=1e-6)
    assert not torch.allclose(walked, teacher.step(x, t, s, cond), atol=1e-3)
    assert consistency_settings({"teacher": "digits", "teacher_substeps": 3}).teacher_substeps == 3
    assert consistency_settings({"teacher": "digits"}).teacher_substeps == 1
    with pytest.raises(GenimageError, match="teacher_substeps"):
        consistency_settings({"teacher": "digits", "teacher_substeps": 0})
    with pytest.raises(GenimageError, match="teacher_substeps is for distillation"):
        consistency_settings({"mode": "training", "teacher_substeps": 3})
