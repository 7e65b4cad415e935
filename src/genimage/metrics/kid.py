"""Kernel Inception Distance (KID): an unbiased MMD^2 between two feature sets.

Bińkowski, Sutherland, Arbel & Gretton, 2018, "Demystifying MMD GANs", Sec. 5 (KID) with the
cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3          (d = feature dimension),

and the unbiased U-statistic estimator of the squared MMD (Gretton et al., 2012, "A Kernel
Two-Sample Test", Lemma 6) on ``m`` samples ``X`` and ``m`` samples ``Y``:

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
              - 2/(m m) sum_{i, j} k(x_i, y_j).

The within-set sums exclude the diagonal, which is what makes the estimate unbiased (its
expectation is 0 when X and Y come from one distribution, so it can be negative). As in the
paper, KID is the mean over ``n_subsets`` random subsets of size ``subset_size`` drawn without
replacement from each set (seeded here), and the spread over subsets is reported as its std.

KID's scale follows the features' scale (the kernel is cubic in ``x . y / d``): genimage's
domain features have larger norms than Inception's pool features, so their KID values are
much larger and only comparable with other KIDs in the same features. With
``subset_size == N == M`` every subset is the whole set, so ``kid_std`` is 0.

Own code rather than ``torchmetrics.image.kid.KernelInceptionDistance``: that class draws its
subsets from the global torch RNG and accumulates images through its own feature module; a
seeded function on feature matrices is simpler and reproducible.
"""

from __future__ import annotations

import torch

from genimage.errors import GenimageError
from genimage.metrics._arrays import ArrayLike, as_features, check_same_dim


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """``(x . y / d + coef0) ** degree`` for all pairs: ``(..., n, d)``, ``(..., m, d)`` -> ``(..., n, m)``."""
    d = x.shape[-1]
    return (x @ y.transpose(-1, -2) / d + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 (U-statistic, diagonals excluded) with the KID kernel.

    Args:
        x: ``(..., m, d)`` samples of one set (leading dims are a batch of independent estimates).
        y: ``(..., n, d)`` samples of the other (``n`` may differ from ``m``).

    Returns:
        ``(...)`` estimates.
    """
    m, n = x.shape[-2], y.shape[-2]
    if m < 2 or n < 2:
        raise GenimageError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sum_xx = kxx.sum((-1, -2)) - kxx.diagonal(dim1=-2, dim2=-1).sum(-1)
    sum_yy = kyy.sum((-1, -2)) - kyy.diagonal(dim1=-2, dim2=-1).sum(-1)
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * kxy.mean((-1, -2))


def mmd2_biased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased MMD^2 (V-statistic: diagonals included), for comparison; always >= 0 in expectation > 0."""
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return kxx.mean((-1, -2)) + kyy.mean((-1, -2)) - 2.0 * kxy.mean((-1, -2))


def kernel_inception_distance(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    max_cached: int = 4096,
) -> dict[str, float]:
    """KID between two feature sets: mean and std of the unbiased MMD^2 over random subsets.

    Args:
        feats_a: ``(N, D)`` features (e.g. generated samples).
        feats_b: ``(M, D)`` features (e.g. reference images).
        n_subsets: Number of subset pairs averaged (the paper uses 100).
        subset_size: Samples per subset; capped at ``min(N, M)`` (the paper uses 1000).
        seed: Seed of the subset draws (same seed, same result).
        max_cached: When ``N`` and ``M`` are at most this, the three kernel matrices are computed
            once and all subsets' sums come from them by matrix products (same numbers up to
            round-off, much faster); larger sets compute each subset's kernels directly.

    Returns:
        ``{"kid": mean, "kid_std": std over subsets, "subset_size": m, "n_subsets": n_subsets}``.
    """
    fa = as_features(feats_a, "feats_a", min_rows=2)
    fb = as_features(feats_b, "feats_b", min_rows=2)
    check_same_dim(fa, fb, "kernel_inception_distance")
    if n_subsets < 1 or subset_size < 2:
        raise GenimageError(f"KID needs n_subsets >= 1 and subset_size >= 2, got {n_subsets} and {subset_size}")
    m = min(subset_size, fa.shape[0], fb.shape[0])
    gen = torch.Generator().manual_seed(seed)
    subsets = [(torch.randperm(fa.shape[0], generator=gen)[:m], torch.randperm(fb.shape[0], generator=gen)[:m])
               for _ in range(n_subsets)]
    if max(fa.shape[0], fb.shape[0]) <= max_cached:
        # all subsets at once: with 0/1 selection rows W, the sum of K over a subset's pairs is
        # rowsum((W K) * W); one matrix product per kernel instead of n_subsets gathers
        wa = torch.zeros(n_subsets, fa.shape[0], dtype=torch.float64)
        wb = torch.zeros(n_subsets, fb.shape[0], dtype=torch.float64)
        for i, (ia, ib) in enumerate(subsets):
            wa[i, ia], wb[i, ib] = 1.0, 1.0
        kaa, kbb, kab = polynomial_kernel(fa, fa), polynomial_kernel(fb, fb), polynomial_kernel(fa, fb)
        sum_aa = ((wa @ kaa) * wa).sum(1) - wa @ kaa.diagonal()
        sum_bb = ((wb @ kbb) * wb).sum(1) - wb @ kbb.diagonal()
        values = (sum_aa + sum_bb) / (m * (m - 1)) - 2.0 * ((wa @ kab) * wb).sum(1) / (m * m)
    else:
        values = torch.stack([mmd2_unbiased(fa[ia], fb[ib]) for ia, ib in subsets])
    std = float(values.std(correction=1)) if n_subsets > 1 else 0.0
    return {"kid": float(values.mean()), "kid_std": std, "subset_size": m, "n_subsets": n_subsets}
