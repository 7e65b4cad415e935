"""Round trips and closed forms of genimage.paths.conversions (eps / x0 / v / velocity / edm)."""

import math

import pytest
import torch

from genimage.errors import GenimageError
from genimage.models.denoiser import Denoiser
from genimage.paths import build_path
from genimage.paths.conversions import (
    PREDICTIONS,
    PathCoefficients,
    edm_scalings,
    from_x0_eps,
    input_scale,
    to_x0_eps,
)

PATH_NAMES = ["vp-cosine", "vp-linear", "edm", "linear"]
SHAPE = (3, 2, 4, 4)


def sample_times(path) -> list[float]:
    """The path's end points plus interior times (log-spaced for EDM)."""
    if path.name == "edm":
        inner = [math.exp(v) for v in torch.linspace(math.log(path.t_min), math.log(path.t_max), 6)[1:-1].tolist()]
    else:
        inner = [path.t_min + f * (path.t_max - path.t_min) for f in (0.1, 0.35, 0.6, 0.9)]
    return [path.t_min, *inner, path.t_max]


def singular(kind: str, c: PathCoefficients) -> bool:
    """Where a conversion divides by zero: eps needs alpha > 0; x0 needs sigma > 0; edm needs both."""
    a, s = float(c.alpha.min()), float(c.sigma.min())
    return (kind in ("eps", "edm") and a == 0) or (kind in ("x0", "edm") and s == 0)


def x0_eps(seed: int = 0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.7 + 0.2,
            torch.randn(shape, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", PATH_NAMES)
def test_round_trip_recovers_x0_and_eps(name, kind):
    path = build_path(name)
    x0, eps = x0_eps()
    checked = 0
    for t in sample_times(path):
        c = PathCoefficients.at(path, t)
        if singular(kind, c):
            continue
        x = c.alpha * x0 + c.sigma * eps
        raw = from_x0_eps(kind, x0, eps, c)
        x0_r, eps_r = to_x0_eps(kind, raw, x, c)
        assert x0_r.dtype == eps_r.dtype == torch.float64
        torch.testing.assert_close(x0_r, x0, rtol=1e-10, atol=1e-10, msg=f"x0 at t={t}")
        torch.testing.assert_close(eps_r, eps, rtol=1e-10, atol=1e-10, msg=f"eps at t={t}")
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", PATH_NAMES)
def test_round_trip_with_per_sample_times(name, kind):
    path = build_path(name)
    times = sample_times(path)[1:-1]
    x0, eps = x0_eps(1, (len(times), 3, 2, 2))
    c = PathCoefficients.at(path, torch.tensor(times, dtype=torch.float64))
    assert c.alpha.shape == (len(times), 1, 1, 1)
    x = c.alpha * x0 + c.sigma * eps
    x0_r, eps_r = to_x0_eps(kind, from_x0_eps(kind, x0, eps, c), x, c)
    torch.testing.assert_close(x0_r, x0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eps_r, eps, rtol=1e-10, atol=1e-10)
    # each sample converted alone gives the same answer
    for i, t in enumerate(times):
        ci = PathCoefficients.at(path, t)
        torch.testing.assert_close(from_x0_eps(kind, x0[i], eps[i], ci), from_x0_eps(kind, x0, eps, c)[i],
                                   rtol=1e-12, atol=1e-12)


def test_velocity_of_linear_path_is_eps_minus_x0():
    path = build_path("linear")
    x0, eps = x0_eps(2)
    for t in (0.0, 0.3, 1.0):
        c = PathCoefficients.at(path, t)
        torch.testing.assert_close(from_x0_eps("velocity", x0, eps, c), eps - x0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["vp-cosine", "vp-linear"])
def test_v_of_vp_paths_is_alpha_eps_minus_sigma_x0(name):
    path = build_path(name)
    x0, eps = x0_eps(3)
    for t in (0.1, 0.5, 0.9):
        a, s = (float(v) for v in path.coefficients(t))
        c = PathCoefficients.at(path, t)
        torch.testing.assert_close(from_x0_eps("v", x0, eps, c), a * eps - s * x0, rtol=1e-14, atol=1e-14)
        if name == "vp-cosine":  # d/dt (cos, sin)(pi t / 2) = pi/2 (-sin, cos): velocity = pi/2 * v
            torch.testing.assert_close(from_x0_eps("velocity", x0, eps, c), math.pi / 2 * (a * eps - s * x0),
                                       rtol=1e-13, atol=1e-13)


def test_velocity_is_the_time_derivative_of_x_t():
    path = build_path("vp-linear")
    x0, eps = x0_eps(4)
    t, h = 0.4, 1e-6
    x_at = lambda tt: path.alpha(tt) * x0 + path.sigma(tt) * eps  # noqa: E731  (python floats -> float64)
    fd = (x_at(t + h) - x_at(t - h)) / (2 * h)
    velocity = from_x0_eps("velocity", x0, eps, PathCoefficients.at(path, t))
    torch.testing.assert_close(velocity, fd, rtol=1e-7, atol=1e-7)


def test_edm_scalings_match_karras_table_1_on_the_edm_path():
    path, sd = build_path("edm"), 0.5
    for sigma in (0.002, 0.5, 3.0, 80.0):
        c = PathCoefficients.at(path, sigma)
        c_skip, c_out, c_in = (float(v) for v in edm_scalings(c, sd))
        assert c_skip == pytest.approx(sd**2 / (sigma**2 + sd**2), rel=1e-12)
        assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2), rel=1e-12)
        assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + sd**2), rel=1e-12)
        assert float(input_scale("edm", c, sd)) == pytest.approx(c_in, rel=1e-12)
        for kind in ("eps", "x0", "v", "velocity"):
            assert float(input_scale(kind, c, sd)) == 1.0


def test_edm_input_scale_on_a_vp_path_normalizes_x_t():
    # x_t / alpha has std sqrt(sd^2 + sigma_hat^2) when x0 has std sd; c_in / alpha undoes it.
    path, sd = build_path("vp-cosine"), 0.5
    for t in (0.2, 0.7, 0.95):
        a, s = (float(v) for v in path.coefficients(t))
        scale = float(input_scale("edm", PathCoefficients.at(path, t), sd))
        assert scale * math.sqrt(a**2 * sd**2 + s**2) == pytest.approx(1.0, rel=1e-12)


def test_output_dtype_follows_x():
    path = build_path("vp-cosine")
    x0, eps = (v.float() for v in x0_eps(5))
    c = PathCoefficients.at(path, 0.5)
    x = (c.alpha * x0 + c.sigma * eps).float()
    for kind in PREDICTIONS:
        raw = from_x0_eps(kind, x0, eps, c)
        assert raw.dtype == torch.float32
        x0_r, eps_r = to_x0_eps(kind, raw, x, c)
        assert x0_r.dtype == eps_r.dtype == torch.float32
        torch.testing.assert_close(x0_r, x0, rtol=1e-5, atol=1e-5)


def test_unknown_prediction_raises():
    path = build_path("edm")
    c = PathCoefficients.at(path, 1.0)
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(GenimageError, match="prediction"):
        to_x0_eps("score", x, x, c)
    with pytest.raises(GenimageError, match="prediction"):
        from_x0_eps("score", x, x, c)
    with pytest.raises(GenimageError, match="eps"):
        Denoiser(torch.nn.Identity(), path, "noise")
