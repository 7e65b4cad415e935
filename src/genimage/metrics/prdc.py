"""Precision, recall, density and coverage of generated samples in feature space.

* Precision and recall with k-NN manifolds: Kynkäänniemi, Karras, Laine, Lehtinen & Aila,
  2019, "Improved Precision and Recall Metric for Assessing Generative Models", Eqs. (1)-(2).
  A set's manifold is the union of balls around its points, each with the radius to the
  point's k-th nearest neighbour in the same set. Precision = share of fake samples inside
  the real manifold; recall = share of real samples inside the fake manifold.
* Density and coverage: Naeem, Oh, Uh, Choi & Yoo, 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models", Eqs. (3)-(4), with real-set radii ``r_i`` only:

      density  = 1/(k M) sum_j sum_i 1[ ||Y_j - X_i|| <= r_i ]
      coverage = 1/N     sum_i 1[ min_j ||Y_j - X_i|| <= r_i ]

  (``X`` = N real, ``Y`` = M fake). Density can exceed 1 for samples packed near real modes.

Distances are computed in float64, chunk by chunk (``chunk`` rows at a time), so memory is
``O(chunk * max(N, M))``; squared distances are compared with squared radii (no sqrt), and a
point on a ball's boundary counts as inside up to a relative round-off of :data:`BOUNDARY_RTOL`
(so a fake sample equal to a real point's k-th neighbour is inside that ball, as in exact
arithmetic).
"""

from __future__ import annotations

import torch

from genimage.errors import GenimageError
from genimage.metrics._arrays import ArrayLike, as_features, check_same_dim

BOUNDARY_RTOL = 1e-9
"""Relative slack on squared radii: absorbs the round-off of distances computed in another order."""


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(len(a), len(b))``, clamped at 0."""
    return ((a * a).sum(1, keepdim=True) + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_min_(0)


def knn_radii_sq(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Squared distance from each row of ``x`` to its ``k``-th nearest other row (self excluded)."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise GenimageError(f"k-NN radii need 1 <= k < number of points; got k={k} with {n} points")
    x_sq = (x * x).sum(1)
    out = torch.empty(n, dtype=x.dtype)
    for start in range(0, n, chunk):
        d = _sq_dists(x[start:start + chunk], x, x_sq)
        rows = torch.arange(d.shape[0])
        d[rows, rows + start] = float("inf")  # exclude the point itself
        out[start:start + chunk] = d.kthvalue(k, dim=1).values
    return out


def _inside_counts(query: torch.Tensor, centres: torch.Tensor, radii_sq: torch.Tensor, chunk: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row: how many balls (centre, radius) contain it, and its nearest-centre squared distance."""
    c_sq = (centres * centres).sum(1)
    counts = torch.empty(query.shape[0], dtype=torch.long)
    nearest = torch.empty(query.shape[0], dtype=query.dtype)
    for start in range(0, query.shape[0], chunk):
        d = _sq_dists(query[start:start + chunk], centres, c_sq)
        counts[start:start + chunk] = (d <= radii_sq[None, :] * (1 + BOUNDARY_RTOL)).sum(1)
        nearest[start:start + chunk] = d.min(1).values
    return counts, nearest


def prdc(real: ArrayLike, fake: ArrayLike, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

    Args:
        real: ``(N, D)`` features of real (reference) images.
        fake: ``(M, D)`` features of generated images.
        k: Neighbour index for the manifold radii (Kynkäänniemi et al. use 3, Naeem et al.
            recommend 5; genimage uses 5 for all four).
        chunk: Rows per distance block (memory knob only; results do not depend on it).

    Returns:
        ``{"precision", "recall", "density", "coverage", "k"}``.
    """
    x = as_features(real, "real features", min_rows=2)
    y = as_features(fake, "fake features", min_rows=2)
    check_same_dim(x, y, "prdc")
    if chunk < 1:
        raise GenimageError(f"chunk must be >= 1, got {chunk}")
    real_r2 = knn_radii_sq(x, k, chunk)
    fake_r2 = knn_radii_sq(y, k, chunk)
    # fake samples against real balls: precision, density
    fake_in_real, _ = _inside_counts(y, x, real_r2, chunk)
    # real samples against fake balls: recall; and each real sample's nearest fake: coverage
    # (real sample i is covered when its nearest fake lies within its own real radius)
    real_in_fake, nearest_fake = _inside_counts(x, y, fake_r2, chunk)
    return {
        "precision": float((fake_in_real > 0).double().mean()),
        "recall": float((real_in_fake > 0).double().mean()),
        "density": float(fake_in_real.double().sum() / (k * y.shape[0])),
        "coverage": float((nearest_fake <= real_r2 * (1 + BOUNDARY_RTOL)).double().mean()),
        "k": k,
    }
