"""Closed-form checks of the noise paths in genimage.paths."""

import math

import pytest
import torch

from genimage.errors import GenimageError
from genimage.paths import PATHS, NoisePath, build_path

PATH_NAMES = ["vp-cosine", "vp-linear", "edm", "linear"]
VP_NAMES = ["vp-cosine", "vp-linear"]


def _vp_linear_log_alpha(t):
    # Song et al. (2021), Eq. 33 with beta_0 = 0.1, beta_1 = 20.
    return -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1


CLOSED_FORMS = {
    "vp-cosine": (lambda t: math.cos(math.pi * t / 2), lambda t: math.sin(math.pi * t / 2)),
    "vp-linear": (
        lambda t: math.exp(_vp_linear_log_alpha(t)),
        lambda t: math.sqrt(1.0 - math.exp(2 * _vp_linear_log_alpha(t))),
    ),
    "edm": (lambda t: 1.0, lambda t: t),
    "linear": (lambda t: 1.0 - t, lambda t: t),
}


def interior_times(path: NoisePath, n: int = 9) -> torch.Tensor:
    """``n`` float64 times strictly inside ``(t_min, t_max)``, log-spaced for EDM's wide range."""
    lo, hi = max(path.t_min, 1e-3), path.t_max
    f = torch.linspace(0.05, 0.95, n, dtype=torch.float64)
    if path.name == "edm":
        return torch.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))
    return lo + f * (hi - lo)


@pytest.fixture(params=PATH_NAMES)
def path(request) -> NoisePath:
    return build_path(request.param)


def test_registry_lists_all_paths_and_rejects_unknown():
    assert set(PATH_NAMES) <= set(PATHS.names())
    with pytest.raises(GenimageError, match="vp-cosine"):
        build_path("vp-cosinus")


def test_alpha_sigma_match_closed_forms(path):
    alpha_f, sigma_f = CLOSED_FORMS[path.name]
    t = torch.cat([torch.tensor([path.t_min, path.t_max], dtype=torch.float64), interior_times(path)])
    a, s = path.coefficients(t)
    assert a.dtype == s.dtype == torch.float64 and a.shape == s.shape == t.shape
    want_a = torch.tensor([alpha_f(float(v)) for v in t], dtype=torch.float64)
    want_s = torch.tensor([sigma_f(float(v)) for v in t], dtype=torch.float64)
    torch.testing.assert_close(a, want_a, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(s, want_s, rtol=1e-12, atol=1e-14)


def test_python_float_and_scalar_tensor_times_agree(path):
    t = float(interior_times(path)[3])
    assert float(path.alpha(t)) == float(path.alpha(torch.tensor(t, dtype=torch.float64)))
    assert path.sigma(torch.tensor(t, dtype=torch.float32)).dtype == torch.float64


def test_derivatives_match_central_differences(path):
    t = interior_times(path)
    h = 1e-6 * t.clamp_min(1.0) if path.name == "edm" else torch.full_like(t, 1e-6)
    for f, df in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        torch.testing.assert_close(df(t), fd, rtol=1e-7, atol=1e-7)


def test_t_from_sigma_hat_inverts_sigma_hat(path):
    t = interior_times(path)
    sh = path.sigma_hat(t)
    assert torch.all(sh[1:] > sh[:-1]), "sigma_hat must increase with t"
    torch.testing.assert_close(path.t_from_sigma_hat(sh), t, rtol=1e-10, atol=1e-12)
    # and the other way round, over the whole range a Karras schedule uses
    levels = torch.logspace(-3, math.log10(path.sigma_hat_max_schedule), 25, dtype=torch.float64)
    torch.testing.assert_close(path.sigma_hat(path.t_from_sigma_hat(levels)), levels, rtol=1e-9, atol=0)


def test_sigma_hat_is_sigma_over_alpha_and_infinite_where_alpha_vanishes():
    lin = build_path("linear")
    assert math.isinf(float(lin.sigma_hat(1.0)))
    assert float(lin.sigma_hat(0.5)) == pytest.approx(1.0)
    assert float(lin.t_from_sigma_hat(torch.tensor(80.0))) == pytest.approx(80 / 81)


@pytest.mark.parametrize("name", VP_NAMES)
def test_vp_paths_preserve_variance(name):
    path = build_path(name)
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    a, s = path.coefficients(t)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t), rtol=0, atol=1e-14)


def test_boundary_values(path):
    a0, s0 = path.coefficients(0.0)
    if path.name != "edm":  # EDM's path is sigma = t: time 0 is the clean image too
        assert float(a0) == 1.0
    assert float(s0) == 0.0
    a1, s1 = path.coefficients(path.t_max)
    assert float(s1 / a1) >= path.sigma_hat_max_schedule if float(a1) > 0 else float(s1) == 1.0
    assert 0 <= path.t_min < path.t_max


def test_c_noise_finite_and_increasing(path):
    t = torch.linspace(path.t_min, path.t_max, 201, dtype=torch.float64)
    c = path.c_noise(t)
    assert torch.isfinite(c).all()
    assert torch.all(c[1:] > c[:-1])
    # all paths feed the backbone numbers of a similar range
    assert float(c.abs().max()) < 2000


def test_config_names_round_trip(path):
    assert path.to_config() == {"name": path.name}
    assert type(build_path(path.to_config()["name"])) is type(path)
