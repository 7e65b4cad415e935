"""Fréchet distance: agreement with scipy's sqrtm, the Gaussian closed form, and edge cases."""

import numpy as np
import pytest
import scipy.linalg
import torch

from genimage.errors import GenimageError
from genimage.metrics.frechet import feature_stats, frechet_distance, gaussian_frechet


def _features(seed: int, n: int, d: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("n,d", [(400, 16), (300, 32)])
def test_matches_scipy_sqrtm(n, d):
    a, b = _features(0, n, d, 0.0), _features(1, n, d, 0.3)
    ours, ref = frechet_distance(a, b), _scipy_fd(a, b)
    assert ref > 0.1
    assert abs(ours - ref) < 1e-6


def test_accepts_tensors_and_arrays_alike():
    a, b = _features(2, 100, 8, 0.0), _features(3, 120, 8, 1.0)
    assert frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(
        frechet_distance(torch.from_numpy(a).float().numpy(), b), abs=1e-12)


def test_feature_stats_unbiased_covariance():
    a = _features(4, 50, 5, 2.0)
    mu, cov = feature_stats(a)
    np.testing.assert_allclose(mu.numpy(), a.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(a, rowvar=False), atol=1e-12)


def test_gaussian_closed_form_diagonal():
    rng = np.random.default_rng(5)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert gaussian_frechet(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, abs=1e-10)


def test_gaussian_rotation_invariant_and_symmetric():
    rng = np.random.default_rng(6)
    d = 10
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T, b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    base = gaussian_frechet(mu1, s1, mu2, s2)
    rotated = gaussian_frechet(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T)
    assert rotated == pytest.approx(base, rel=1e-9)
    assert gaussian_frechet(mu2, s2, mu1, s1) == pytest.approx(base, rel=1e-9)


@pytest.mark.parametrize("n,d", [(200, 8), (40, 64)])  # full-rank and rank-deficient covariance
def test_zero_for_identical_sets(n, d):
    a = _features(7, n, d, 1.0)
    assert 0.0 <= frechet_distance(a, a.copy()) < 1e-8
    assert frechet_distance(a, a + 0.5) == pytest.approx(0.25 * d, rel=1e-9)  # mean shift only


def test_errors_are_user_errors():
    a = _features(8, 20, 4, 0.0)
    with pytest.raises(GenimageError, match="share D"):
        frechet_distance(a, a[:, :3])
    with pytest.raises(GenimageError, match="at least 2"):
        frechet_distance(a[:1], a)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(GenimageError, match="NaN"):
        frechet_distance(bad, a)
