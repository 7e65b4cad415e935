"""Per-sample randomness (genimage.samplers.noise) and its use by the stochastic samplers."""

from functools import partial

import pytest
import torch

from analytic import AnalyticDenoiser, GaussianMixture
from genimage.paths import build_path
from genimage.samplers import SAMPLERS, make_schedule
from genimage.samplers.noise import generators_for_seeds, randn
from genimage.samplers.ode import ddim

SEEDS = [11, 22, 33, 44]
SHAPE = (len(SEEDS), 2, 3, 3)


def test_generators_are_seeded_and_independent():
    a, b = generators_for_seeds([1, 2]), generators_for_seeds([1, 2])
    assert all(isinstance(g, torch.Generator) for g in a)
    assert torch.equal(torch.randn(5, generator=a[0]), torch.randn(5, generator=b[0]))
    assert not torch.equal(torch.randn(5, generator=a[1]), torch.randn(5, generator=a[0]))


def test_randn_per_sample_does_not_depend_on_batch():
    batch = randn(SHAPE, generators_for_seeds(SEEDS))
    assert batch.shape == SHAPE and batch.dtype == torch.float32
    for i, seed in enumerate(SEEDS):
        alone = randn((1, *SHAPE[1:]), generators_for_seeds([seed]))
        assert torch.equal(batch[i : i + 1], alone)
    # and a sample's noise does not depend on its neighbours' seeds
    other = randn(SHAPE, generators_for_seeds([99, 22, 98, 97]))
    assert torch.equal(other[1], batch[1]) and not torch.equal(other[0], batch[0])


def test_randn_single_generator_none_and_dtype():
    a = randn((2, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    b = randn((2, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert a.dtype == torch.float64 and torch.equal(a, b)
    assert randn((2, 3)).shape == (2, 3)


def test_randn_wrong_number_of_generators_raises():
    with pytest.raises(ValueError, match="generators"):
        randn((3, 4), generators_for_seeds([1, 2]))


STOCHASTIC = {
    "ddpm": SAMPLERS.get("ddpm"),
    "ddim_eta1": partial(ddim, eta=1.0),
    "ddim_eta0.3": partial(ddim, eta=0.3),
}


@pytest.mark.parametrize("name", list(STOCHASTIC))
@pytest.mark.parametrize("path_name", ["vp-linear", "linear"])
def test_stochastic_sample_is_the_same_alone_or_in_a_batch(path_name, name):
    """Sample i depends only on seed i: bit-identical in a batch of 4 and alone (the exact
    denoiser is elementwise, so only the sampler's noise handling can break this)."""
    path, mix = build_path(path_name), GaussianMixture()
    ts = make_schedule("karras", path, 12)

    def run(seeds):
        gens = generators_for_seeds(seeds)
        x = randn((len(seeds), *SHAPE[1:]), gens, dtype=torch.float64) * float(path.sigma(ts[0]))
        return STOCHASTIC[name](AnalyticDenoiser(path, mix), x, ts, generator=gens)

    batch = run(SEEDS)
    assert torch.isfinite(batch).all()
    for i, seed in enumerate(SEEDS):
        assert torch.equal(run([seed])[0], batch[i]), f"sample {i} changed with the batch"
    # the noise is really used: a different seed for sample 0 changes sample 0 only
    changed = run([5, *SEEDS[1:]])
    assert not torch.equal(changed[0], batch[0]) and torch.equal(changed[1:], batch[1:])
