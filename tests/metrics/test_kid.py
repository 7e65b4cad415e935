"""KID: unbiased MMD^2 (mean ~0 for one distribution), positive for different ones, seeded subsets."""

import pytest
import torch

from genimage.errors import GenimageError
from genimage.metrics.kid import kernel_inception_distance, mmd2_biased, mmd2_unbiased, polynomial_kernel


def test_polynomial_kernel_value():
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[3.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    # (x.y / d + 1)^3 with d = 2: x.y = 1 -> 1.5^3; zero vector -> 1
    assert polynomial_kernel(x, y).tolist() == [[1.5**3, 1.0]]


def test_unbiased_mean_is_zero_for_same_distribution_while_biased_is_positive():
    gen = torch.Generator().manual_seed(0)
    reps, m, d = 400, 40, 8
    x = torch.randn(reps, m, d, generator=gen, dtype=torch.float64)
    y = torch.randn(reps, m, d, generator=gen, dtype=torch.float64)
    u, v = mmd2_unbiased(x, y), mmd2_biased(x, y)
    se_u, se_v = u.std() / reps**0.5, v.std() / reps**0.5
    assert abs(float(u.mean())) < 3 * float(se_u)
    assert float(v.mean()) > 10 * float(se_v)  # the V-statistic is biased upwards
    assert (u < 0).any()  # an unbiased estimate of 0 must sometimes be negative


def test_unbiased_formula_matches_explicit_sums():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert float(mmd2_unbiased(x, y)) == pytest.approx(float(xx + yy - 2 * xy), abs=1e-12)


def test_kid_positive_for_different_distributions_and_near_zero_for_same():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(600, 16, generator=gen)
    b = torch.randn(600, 16, generator=gen)
    c = torch.randn(600, 16, generator=gen) * 1.3 + 0.4
    same = kernel_inception_distance(a, b, n_subsets=50, subset_size=200, seed=0)
    diff = kernel_inception_distance(a, c, n_subsets=50, subset_size=200, seed=0)
    assert diff["kid"] > 0.05
    assert diff["kid"] > 20 * abs(same["kid"])
    assert diff["kid"] > 3 * diff["kid_std"]
    assert same["subset_size"] == 200 and same["n_subsets"] == 50


def test_seeded_and_cache_independent():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(120, 6, generator=gen), torch.randn(90, 6, generator=gen) + 0.2
    r1 = kernel_inception_distance(a, b, n_subsets=20, subset_size=1000, seed=5)
    r2 = kernel_inception_distance(a, b, n_subsets=20, subset_size=1000, seed=5)
    r3 = kernel_inception_distance(a, b, n_subsets=20, subset_size=1000, seed=5, max_cached=0)
    r4 = kernel_inception_distance(a, b, n_subsets=20, subset_size=1000, seed=6)
    assert r1 == r2
    assert r1["subset_size"] == 90  # capped at the smaller set
    assert r3["kid"] == pytest.approx(r1["kid"], abs=1e-12)
    assert r3["kid_std"] == pytest.approx(r1["kid_std"], abs=1e-12)
    assert r4["kid"] != r1["kid"]


def test_errors():
    a = torch.randn(10, 4)
    with pytest.raises(GenimageError, match="share D"):
        kernel_inception_distance(a, torch.randn(10, 5))
    with pytest.raises(GenimageError, match="n_subsets"):
        kernel_inception_distance(a, a, n_subsets=0)
