"""Precision / recall / density / coverage on point sets with known answers."""

import numpy as np
import pytest
import torch

from genimage.errors import GenimageError
from genimage.metrics.prdc import knn_radii_sq, prdc


def _brute(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    drr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    dff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    drf = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # (N, M)
    r_real = np.sort(drr, axis=1)[:, k]  # index 0 is the point itself
    r_fake = np.sort(dff, axis=1)[:, k]
    inside = drf <= r_real[:, None]
    return {
        "precision": inside.any(0).mean(),
        "recall": (drf <= r_fake[None, :]).any(1).mean(),
        "density": inside.sum() / (k * fake.shape[0]),
        "coverage": (drf.min(1) <= r_real).mean(),
    }


def _clusters(seed: int, centres: np.ndarray, per: int, scale: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c + scale * rng.normal(size=(per, centres.shape[1])) for c in centres])


def test_matches_brute_force_and_is_chunk_independent():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 5)), rng.normal(size=(45, 5)) * 1.2 + 0.3
    ref = _brute(real, fake, k=3)
    for chunk in (7, 1024):
        got = prdc(real, fake, k=3, chunk=chunk)
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-12), key


def test_identical_sets():
    x = np.random.default_rng(1).normal(size=(200, 8))
    r = prdc(x, x.copy(), k=5)
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    # every real ball holds its centre and its k neighbours: density = (k + 1) / k
    assert r["density"] == pytest.approx(6 / 5)


def test_disjoint_far_clusters_score_zero():
    rng = np.random.default_rng(2)
    r = prdc(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 100.0)
    assert r["precision"] == r["recall"] == r["density"] == r["coverage"] == 0.0


def test_fake_covering_half_the_modes():
    angles = 2 * np.pi * np.arange(10) / 10
    centres = 20.0 * np.stack([np.cos(angles), np.sin(angles)], 1)  # 10 well separated 2-D modes
    real = _clusters(3, centres, per=80)
    fake = _clusters(4, centres[::2], per=80)  # same per-mode distribution, every other mode
    r = prdc(real, fake, k=5)
    assert r["precision"] > 0.95
    assert 0.42 < r["recall"] < 0.52
    assert 0.42 < r["coverage"] < 0.52


def test_knn_radius_excludes_self():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert knn_radii_sq(x, 1).tolist() == [1.0, 1.0, 4.0, 16.0]
    assert knn_radii_sq(x, 2).tolist() == [9.0, 4.0, 9.0, 36.0]


def test_errors():
    x = np.zeros((4, 2))
    with pytest.raises(GenimageError, match="k < number of points"):
        prdc(x, x, k=4)
    with pytest.raises(GenimageError, match="share D"):
        prdc(x, np.zeros((4, 3)))
