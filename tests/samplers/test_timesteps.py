"""Timestep schedules (genimage.samplers.timesteps)."""

import math

import pytest
import torch

from genimage.errors import GenimageError
from genimage.paths import build_path
from genimage.samplers import SCHEDULES, make_schedule
from genimage.samplers.timesteps import karras

PATH_NAMES = ["vp-cosine", "vp-linear", "edm", "linear"]
SCHEDULE_NAMES = ["uniform", "karras"]


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
@pytest.mark.parametrize("name", PATH_NAMES)
def test_schedule_shape_order_and_end_points(name, schedule, steps):
    path = build_path(name)
    ts = make_schedule(schedule, path, steps)
    assert ts.dtype == torch.float64 and ts.shape == (steps + 1,)
    assert torch.all(ts[1:] < ts[:-1]), f"not strictly decreasing: {ts}"
    assert float(ts[-1]) == 0.0
    assert float(ts[-2]) >= path.t_min and float(ts[-2]) > 0
    assert float(ts[0]) <= path.t_max * (1 + 1e-12)  # (sigma^(1/rho))^rho may round up
    if schedule == "uniform":
        assert float(ts[0]) == path.t_max
        if steps > 1:
            assert float(ts[-2]) == pytest.approx(path.t_min if path.t_min > 0 else path.t_max / steps)
    else:
        # Karras starts at the VE level sigma_hat(t_max), capped at sigma_hat_max_schedule
        start = min(float(path.sigma_hat(path.t_max)), path.sigma_hat_max_schedule)
        assert float(path.sigma_hat(ts[0])) == pytest.approx(start, rel=1e-9)


@pytest.mark.parametrize("name", PATH_NAMES)
def test_uniform_is_equally_spaced_in_time(name):
    path = build_path(name)
    ts = make_schedule("uniform", path, 10)
    noisy = ts if path.t_min == 0 else ts[:-1]
    gaps = noisy[:-1] - noisy[1:]
    torch.testing.assert_close(gaps, torch.full_like(gaps, float(gaps.mean())), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", PATH_NAMES)
def test_karras_is_uniform_in_sigma_hat_to_the_one_over_rho(name):
    path, rho = build_path(name), 7.0
    ts = make_schedule("karras", path, 12)
    u = path.sigma_hat(ts[:-1]) ** (1 / rho)
    gaps = u[:-1] - u[1:]
    torch.testing.assert_close(gaps, torch.full_like(gaps, float(gaps.mean())), rtol=1e-8, atol=1e-12)


def test_karras_explicit_range_on_the_edm_path():
    # On EDM's path t = sigma, so Karras et al. (2022), Eq. 5 can be written out directly.
    path, n, rho, lo, hi = build_path("edm"), 18, 7.0, 0.002, 80.0
    ts = karras(path, n, rho=rho, sigma_min=lo, sigma_max=hi)
    i = torch.arange(n, dtype=torch.float64)
    want = (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    torch.testing.assert_close(ts[:-1], want, rtol=1e-12, atol=0)
    assert float(ts[-1]) == 0.0


def test_linear_path_karras_avoids_pure_noise():
    ts = make_schedule("karras", build_path("linear"), 20)
    assert float(ts[0]) == pytest.approx(80 / 81)
    assert make_schedule("uniform", build_path("linear"), 20)[0] == 1.0


@pytest.mark.parametrize("steps", [0, -1, 2.5, "10", None])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_bad_step_counts_raise(schedule, steps):
    with pytest.raises(GenimageError, match="steps"):
        make_schedule(schedule, build_path("vp-cosine"), steps)


def test_unknown_schedule_raises_with_choices():
    assert set(SCHEDULE_NAMES) <= set(SCHEDULES.names())
    with pytest.raises(GenimageError, match="karras"):
        make_schedule("cosine-ish", build_path("edm"), 10)


def test_schedules_are_finite():
    for name in PATH_NAMES:
        for schedule in SCHEDULE_NAMES:
            ts = make_schedule(schedule, build_path(name), 64)
            assert torch.isfinite(ts).all() and not math.isnan(float(ts.sum()))
