"""Samplers on analytic data (genimage.samplers.ode / sde).

The "network" is the exact denoiser of a Gaussian or a Gaussian mixture (``analytic.py``),
so every error measured here is the sampler's own: its convergence order on the
probability-flow ODE, the distribution it lands on, and its bookkeeping (callback, NFE,
dtype). The last group runs every sampler through the real :class:`Denoiser` with an oracle
backbone for every prediction type.
"""

import math
from functools import partial

import pytest
import torch

from analytic import AnalyticDenoiser, Gaussian, GaussianMixture, OracleBackbone, ks_statistic
from genimage.errors import GenimageError
from genimage.models.denoiser import Denoiser
from genimage.paths import build_path
from genimage.paths.conversions import PREDICTIONS
from genimage.samplers import NFE_PER_STEP, SAMPLERS, make_schedule
from genimage.samplers.noise import generators_for_seeds
from genimage.samplers.ode import ddim

PATH_NAMES = ["vp-cosine", "vp-linear", "edm", "linear"]
ODE_SAMPLERS = ["euler", "heun", "ddim", "dpmpp_2m"]
ALL_SAMPLERS = ODE_SAMPLERS + ["ddpm"]
ORDER = {"euler": 1, "ddim": 1, "heun": 2, "dpmpp_2m": 2}

GAUSS = Gaussian(mu=0.3, s=0.6)
MIX = GaussianMixture(weights=(0.5, 0.3, 0.2), means=(-1.0, 0.6, 1.6), stds=(0.25, 0.2, 0.15))
# standardized initial values, as a (B, C, H, W) batch
Z = torch.linspace(-3, 3, 40, dtype=torch.float64).reshape(2, 1, 4, 5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests run many small elementwise ops; on a shared 2-core machine intra-op
    threading makes them several times slower, so run this module single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sampler(name: str):
    """A sampler by name; ``"ddim_eta1"``/``"ddim_eta0.5"`` are DDIM with that eta."""
    if name.startswith("ddim_eta"):
        return partial(ddim, eta=float(name[len("ddim_eta"):]))
    return SAMPLERS.get(name)


def gaussian_run(name, path, steps, schedule="karras", z=Z):
    """Run sampler ``name`` from the standardized values ``z``; returns (output, timesteps, x_T)."""
    ts = make_schedule(schedule, path, steps)
    x = GAUSS.initial(path, ts[0], z)
    return sampler(name)(AnalyticDenoiser(path, GAUSS), x, ts), ts, x


# --------------------------------------------------------------------------- registry & basics
def test_registry_has_all_samplers_and_rejects_unknown():
    assert set(ALL_SAMPLERS) <= set(SAMPLERS.names())
    assert set(NFE_PER_STEP) >= set(ALL_SAMPLERS)
    with pytest.raises(GenimageError, match="euler"):
        SAMPLERS.get("eulr")


@pytest.mark.parametrize("name", ALL_SAMPLERS + ["ddim_eta1"])
def test_float32_batch_in_float32_batch_out(name):
    path = build_path("vp-cosine")
    ts = make_schedule("karras", path, 6)
    x = GAUSS.initial(path, ts[0], Z).float()
    out = sampler(name)(AnalyticDenoiser(path, GAUSS), x, ts, generator=generators_for_seeds(range(2)))
    assert out.dtype == torch.float32 and out.shape == Z.shape and torch.isfinite(out).all()


# --------------------------------------------------------------------------- (a) convergence order
def _errors(name, path, schedule, steps_list):
    """Max error against a sampler with zero discretization error (exact flow to the last
    noisy time, then the exact denoiser, as every sampler's last step is), per step count;
    also returns the output of the last run."""
    errs = []
    for steps in steps_list:
        out, ts, x = gaussian_run(name, path, steps, schedule)
        errs.append(float((out - GAUSS.sampler_reference(path, x, ts)).abs().max()))
    return errs, out


@pytest.mark.parametrize("name", ODE_SAMPLERS)
@pytest.mark.parametrize("path_name", PATH_NAMES)
def test_ode_sampler_converges_at_its_order_karras(path_name, name):
    path = build_path(path_name)
    errs, out = _errors(name, path, "karras", [32, 64, 128])
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    if ORDER[name] == 1:
        assert all(0.75 <= r <= 1.3 for r in rates), f"first-order rates {rates}, errors {errs}"
    else:
        assert all(r >= 1.7 for r in rates), f"second-order rates {rates}, errors {errs}"
    # and at 128 steps it lands on the exact map x_T -> mu + s z (the last-step bias at t_min is tiny)
    err = float((out - (GAUSS.mu + GAUSS.s * Z)).abs().max())
    assert err < (0.05 if ORDER[name] == 1 else 3e-3), err


@pytest.mark.parametrize("name", ODE_SAMPLERS)
@pytest.mark.parametrize("path_name", ["vp-cosine", "vp-linear", "linear"])
def test_ode_sampler_converges_at_its_order_uniform(path_name, name):
    # (uniform spacing in t is a poor schedule for EDM's path, where t = sigma up to 80)
    errs, _ = _errors(name, build_path(path_name), "uniform", [64, 128])
    rate = math.log2(errs[0] / errs[1])
    if ORDER[name] == 1:
        assert 0.8 <= rate <= 1.3, (rate, errs)
    else:
        assert rate >= 1.7, (rate, errs)


def test_dpmpp_2m_follows_lu_et_al_algorithm_2():
    """The update rule itself, on an irregular schedule (the convergence order cannot tell
    ``r = h_prev / h`` from ``h / h_prev``: the difference telescopes). Lu et al. (2022),
    DPM-Solver++, Algorithm 2, with lambda = log(alpha / sigma); the step to t = 0 returns x0."""
    path = build_path("vp-cosine")
    ts = torch.tensor([0.95, 0.8, 0.74, 0.5, 0.42, 0.1, 0.0], dtype=torch.float64)
    model = AnalyticDenoiser(path, MIX)
    x = MIX.marginal(path, ts[0]).quantile(torch.linspace(0.01, 0.99, 40, dtype=torch.float64)).reshape(Z.shape)
    lam = lambda t: float(torch.log(path.alpha(t) / path.sigma(t)))  # noqa: E731
    ref, x0_prev, h_prev = x.clone(), None, None
    for t, s in zip(ts[:-1], ts[1:]):
        x0 = model(ref, t).x0
        if s == 0:
            ref = x0
            break
        h = lam(s) - lam(t)
        d = x0 if x0_prev is None else (1 + h / (2 * h_prev)) * x0 - h / (2 * h_prev) * x0_prev
        ref = float(path.sigma(s) / path.sigma(t)) * ref - float(path.alpha(s)) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    torch.testing.assert_close(sampler("dpmpp_2m")(model, x, ts), ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- (b) mixture
def _check_distribution(out, ks_tol, mean_tol, std_tol, mass_tol):
    ks = ks_statistic(out, MIX.cdf)
    masses = torch.bincount(MIX.nearest(out).flatten(), minlength=3).double() / out.numel()
    d_mean = abs(float(out.mean()) - MIX.mean())
    d_std = abs(float(out.std()) - MIX.std())
    d_mass = float((masses - MIX.cell_masses()).abs().max())
    report = f"KS {ks:.4f}, |dmean| {d_mean:.4f}, |dstd| {d_std:.4f}, |dmass| {d_mass:.4f}"
    assert ks < ks_tol and d_mean < mean_tol and d_std < std_tol and d_mass < mass_tol, report


@pytest.mark.parametrize("name", ODE_SAMPLERS)
@pytest.mark.parametrize("path_name", PATH_NAMES)
def test_ode_sampler_transports_quantiles_of_a_mixture(path_name, name):
    """Deterministic samplers push the exact quantiles of p(x_T) onto the mixture's quantiles.

    Inputs are the N = 1000 mid-quantiles of the marginal at t_0, so sampling error is
    O(1/N) (KS >= 1/(2N)) and what remains is discretization error, which for 100 Karras
    steps is ~0.01 in CDF for first-order and ~0.001 for second-order samplers.
    """
    path = build_path(path_name)
    n = 1000
    ts = make_schedule("karras", path, 100)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    x = MIX.marginal(path, ts[0]).quantile(u).reshape(n // 20, 1, 4, 5)
    out = sampler(name)(AnalyticDenoiser(path, MIX), x, ts)
    assert torch.all(out.flatten().diff() > 0), "the flow map must be monotone"
    if ORDER[name] == 1:
        _check_distribution(out, ks_tol=0.015, mean_tol=0.004, std_tol=0.025, mass_tol=0.015)
    else:
        _check_distribution(out, ks_tol=0.002, mean_tol=0.001, std_tol=0.003, mass_tol=0.002)


@pytest.mark.parametrize(("path_name", "name"), [(p, "ddpm") for p in PATH_NAMES]
                         + [("vp-cosine", "ddim_eta1"), ("linear", "ddim_eta1")])
def test_stochastic_sampler_lands_on_a_mixture(path_name, name):
    """N = 10000 exact draws of x_T, 400 Karras steps. Tolerances are 5 standard errors
    (mean: std/sqrt N; std: sqrt(mu4 - var^2)/(2 std sqrt N); masses: binomial) and KS below
    its 0.1% critical value 1.95/sqrt N plus 0.005 for the sampler's O(1/steps) bias."""
    path = build_path(path_name)
    n, gen = 10_000, torch.Generator().manual_seed(1234)
    ts = make_schedule("karras", path, 400)
    x = MIX.sample_initial(path, ts[0], n, gen).reshape(n // 100, 1, 10, 10)
    out = sampler(name)(AnalyticDenoiser(path, MIX), x, ts, generator=gen)
    mass_se = float((MIX.cell_masses() * (1 - MIX.cell_masses()) / n).sqrt().max())
    _check_distribution(out, ks_tol=1.95 / math.sqrt(n) + 0.005, mean_tol=5 * MIX.std() / math.sqrt(n),
                        std_tol=5 * MIX.std_error_of_std(n), mass_tol=5 * mass_se)


# --------------------------------------------------------------------------- (c) stochastic, Gaussian
@pytest.mark.parametrize(("path_name", "name"), [(p, s) for p in PATH_NAMES for s in ("ddpm", "ddim_eta0.5")]
                         + [("vp-cosine", "ddim_eta1")])  # eta = 1 equals ddpm exactly (next test)
def test_stochastic_sampler_gaussian_mean_and_std(path_name, name):
    """N = 10000, 400 steps; 5 standard errors (mean s/sqrt N, std s/sqrt(2N))."""
    path, n = build_path(path_name), 10_000
    gen = torch.Generator().manual_seed(99)
    z = torch.randn(n // 100, 1, 10, 10, generator=gen, dtype=torch.float64)
    ts = make_schedule("karras", path, 400)
    out = sampler(name)(AnalyticDenoiser(path, GAUSS), GAUSS.initial(path, ts[0], z), ts, generator=gen)
    assert abs(float(out.mean()) - GAUSS.mu) < 5 * GAUSS.s / math.sqrt(n)
    assert abs(float(out.std()) - GAUSS.s) < 5 * GAUSS.s / math.sqrt(2 * n)


@pytest.mark.parametrize("path_name", PATH_NAMES)
def test_ddim_eta1_is_ddpm(path_name):
    # DDIM with eta = 1 is DDPM's ancestral sampler (Song et al. 2021, Sec. 4.1): same noise, same result.
    path = build_path(path_name)
    ts = make_schedule("karras", path, 15)
    x = GAUSS.initial(path, ts[0], Z)
    a = sampler("ddpm")(AnalyticDenoiser(path, MIX), x, ts, generator=generators_for_seeds(range(2)))
    b = sampler("ddim_eta1")(AnalyticDenoiser(path, MIX), x, ts, generator=generators_for_seeds(range(2)))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    c = sampler("ddim")(AnalyticDenoiser(path, MIX), x, ts, generator=generators_for_seeds(range(2)))
    assert (c - a).abs().max() > 1e-3  # eta = 0 really is different


# --------------------------------------------------------------------------- (e) callback & NFE
@pytest.mark.parametrize("name", ALL_SAMPLERS + ["ddim_eta1"])
def test_callback_once_per_step_with_nfe(name):
    path, steps = build_path("vp-linear"), 6
    ts = make_schedule("karras", path, steps)
    model = AnalyticDenoiser(path, GAUSS)
    seen = []
    out = sampler(name)(model, GAUSS.initial(path, ts[0], Z), ts, generator=generators_for_seeds(range(2)),
                        callback=seen.append)
    assert [d["i"] for d in seen] == list(range(steps))
    assert all({"i", "t", "x", "x0", "nfe"} <= set(d) for d in seen)
    assert [d["t"] for d in seen] == pytest.approx(ts[:-1].tolist(), rel=0, abs=0)
    assert all(d["x"].shape == Z.shape and d["x0"].shape == Z.shape for d in seen)
    assert torch.equal(seen[-1]["x"], out)
    per_step = NFE_PER_STEP[name.split("_eta")[0]]
    want = [per_step * (i + 1) for i in range(steps)]
    if name == "heun":
        want[-1] = 2 * steps - 1  # the last step (to t = 0) is a single evaluation
    assert [d["nfe"] for d in seen] == want
    assert model.nfe == want[-1]


# --------------------------------------------------------------------------- (f) through Denoiser
@pytest.mark.parametrize("name", ALL_SAMPLERS)
@pytest.mark.parametrize("path_name", PATH_NAMES)
def test_every_prediction_type_drives_every_sampler(path_name, name):
    """A backbone that outputs the exact target of its prediction type, wrapped in the real
    Denoiser, gives the same samples as the exact (x0, eps) model. Differences come only
    from the float32 c_noise the backbone sees (t recovered to ~1e-7 relative)."""
    path = build_path(path_name)
    ts = make_schedule("karras", path, 12)
    x = GAUSS.initial(path, ts[0], Z)
    ref = sampler(name)(AnalyticDenoiser(path, GAUSS), x, ts, generator=generators_for_seeds([5, 6]))
    for kind in PREDICTIONS:
        den = Denoiser(OracleBackbone(path, kind, GAUSS), path, kind)
        out = sampler(name)(den, x, ts, generator=generators_for_seeds([5, 6]))
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6, msg=f"prediction {kind!r}")


@pytest.mark.parametrize("kind", ["x0", "v", "velocity"])
def test_linear_path_from_pure_noise_with_regular_predictions(kind):
    # t_0 = 1 (alpha = 0) on the linear path: x0, v and velocity predictions are regular there.
    path = build_path("linear")
    ts = make_schedule("uniform", path, 16)
    assert float(ts[0]) == 1.0
    x = GAUSS.initial(path, ts[0], Z)
    ref = sampler("heun")(AnalyticDenoiser(path, GAUSS), x, ts)
    out = sampler("heun")(Denoiser(OracleBackbone(path, kind, GAUSS), path, kind), x, ts)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["eps", "edm"])
def test_singular_prediction_at_pure_noise_is_not_silent_nan(kind):
    path = build_path("linear")
    ts = make_schedule("uniform", path, 8)
    den = Denoiser(OracleBackbone(path, kind, GAUSS), path, kind)
    with pytest.raises(GenimageError, match="alpha = 0"):
        sampler("euler")(den, GAUSS.initial(path, ts[0], Z), ts)
