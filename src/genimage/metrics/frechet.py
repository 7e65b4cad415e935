"""Fréchet distance between two sets of features (the "FD" behind FID).

Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", Eq. (6): fit a Gaussian to each feature set and take the Fréchet (2-Wasserstein)
distance between the Gaussians (Dowson & Landau, 1982):

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

The matrix square root term is computed without a general (non-symmetric) ``sqrtm``:
with ``A = S1^(1/2)`` (symmetric PSD, from an eigendecomposition), ``S1 S2 = A (A S2)`` has the
same eigenvalues as ``A S2 A``, which is symmetric PSD, so

    tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(A S2 A)),

computed in the eigenbasis of ``S1`` with its numerical null space dropped and tiny negative
eigenvalues from round-off clamped to zero (:func:`trace_sqrt_product`). Everything runs in
float64.
This is only FID when the features are Inception-v3 pool features; with genimage's domain
feature networks it is an FD in *those* features, not comparable to published FID numbers.
"""

from __future__ import annotations

import torch

from genimage.errors import GenimageError
from genimage.metrics._arrays import ArrayLike, as_f64, as_features, check_same_dim


def feature_stats(feats: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (divisor ``N - 1``) of ``(N, D)`` features, float64."""
    f = as_features(feats, "features", min_rows=2)
    mu = f.mean(0)
    centred = f - mu
    cov = centred.T @ centred / (f.shape[0] - 1)
    return mu, cov


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1``, ``S2``.

    With ``S1 = V diag(l) V^T``, the eigenvalues of ``S1 S2`` are those of
    ``diag(l)^(1/2) V^T S2 V diag(l)^(1/2)`` (symmetric PSD). Directions with
    ``l <= D * eps * max(l)`` (the numerical null space of ``S1``, e.g. when N < D) are dropped
    exactly instead of contributing ``sqrt(round-off)`` terms; the remaining eigenvalues are
    clamped at 0 before the square root.
    """
    l, v = torch.linalg.eigh((s1 + s1.T) / 2)
    tol = l.abs().max() * s1.shape[0] * torch.finfo(s1.dtype).eps
    keep = l > tol
    if not bool(keep.any()):
        return 0.0
    root = l[keep].sqrt()
    vk = v[:, keep]
    m = root[:, None] * (vk.T @ ((s2 + s2.T) / 2) @ vk) * root[None, :]
    evals = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(evals.clamp_min(0).sqrt().sum())


def gaussian_frechet(mu1: ArrayLike, s1: ArrayLike, mu2: ArrayLike, s2: ArrayLike) -> float:
    """Squared Fréchet distance between ``N(mu1, S1)`` and ``N(mu2, S2)`` (Dowson & Landau, 1982).

    Args:
        mu1, mu2: Means ``(D,)``.
        s1, s2: Covariances ``(D, D)``, symmetric positive semi-definite.

    Returns:
        ``||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr((S1 S2)^(1/2))`` as a Python float, clamped at 0
        (it is a squared distance; only round-off can make it negative).
    """
    m1, m2 = as_f64(mu1), as_f64(mu2)
    c1, c2 = as_f64(s1), as_f64(s2)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise GenimageError(
            f"gaussian_frechet needs means (D,) and covariances (D, D) of one D; got {tuple(m1.shape)}, "
            f"{tuple(c1.shape)}, {tuple(m2.shape)}, {tuple(c2.shape)}"
        )
    diff = float(((m1 - m2) ** 2).sum())
    value = diff + float(torch.trace(c1)) + float(torch.trace(c2)) - 2.0 * trace_sqrt_product(c1, c2)
    return max(value, 0.0)


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance (squared, as in FID) between Gaussians fitted to two feature sets.

    Args:
        feats_a: ``(N, D)`` features of one image set (e.g. generated samples).
        feats_b: ``(M, D)`` features of the other (e.g. reference images).

    Returns:
        The distance as a float (float64 arithmetic throughout).
    """
    fa, fb = as_features(feats_a, "feats_a", 2), as_features(feats_b, "feats_b", 2)
    check_same_dim(fa, fb, "frechet_distance")
    mu1, s1 = feature_stats(fa)
    mu2, s2 = feature_stats(fb)
    return gaussian_frechet(mu1, s1, mu2, s2)
