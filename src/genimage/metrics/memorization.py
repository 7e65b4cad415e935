"""Memorization check: nearest training images of each generated sample, and the copy rate.

For every generated sample ``x`` find its two nearest training images (L2) in pixel space and
in a feature space; with ``d1 <= d2`` their distances, ``x`` counts as a copy when

    d1 / d2 < threshold        (default 1/3).

This nearest-neighbour ratio test is the memorization criterion of Yoon et al., 2023
("Diffusion Probabilistic Models Generalize when They Fail to Memorize") and Gu et al., 2023
("On Memorization in Diffusion Models", Sec. 3): a sample much closer to one training image
than to any other is a (near-)replica of it. It follows the idea of Carlini et al., 2023
("Extracting Training Data from Diffusion Models", Sec. 4: distance relative to the sample's
other neighbours rather than an absolute threshold) and Somepalli et al., 2023 ("Diffusion Art
or Digital Forgery?": retrieve each generation's closest training images and inspect the top
matches), whose top pairs the report lists.

Limit: a training image with a near-duplicate in the training set gives ``d2 ~ d1`` even for
an exact copy, so such copies are missed; ``closest_pairs`` (sorted by ``d1``) still shows them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.metrics._arrays import ArrayLike, as_features, check_same_dim

DEFAULT_THRESHOLD = 1.0 / 3.0


@dataclasses.dataclass
class NearestTraining:
    """Two nearest training items of each query.

    Attributes:
        index: ``(N, 2)`` training indices of the 1st and 2nd nearest.
        distance: ``(N, 2)`` their L2 distances (float64), ``distance[:, 0] <= distance[:, 1]``.
    """

    index: torch.Tensor
    distance: torch.Tensor

    @property
    def ratio(self) -> torch.Tensor:
        """``d1 / d2`` per query; 0 when ``d1 == 0`` (an exact copy), also if ``d2 == 0``."""
        d1, d2 = self.distance[:, 0], self.distance[:, 1]
        return torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2.clamp_min(torch.finfo(d2.dtype).tiny))


def nearest_training(queries: ArrayLike, train: ArrayLike, chunk: int = 512) -> NearestTraining:
    """The two nearest rows of ``train`` (``(T, D)``, ``T >= 2``) for each row of ``queries`` (``(N, D)``), by L2."""
    q = as_features(queries, "generated samples", min_rows=1)
    t = as_features(train, "training set", min_rows=2)
    check_same_dim(q, t, "nearest_training")
    t_sq = (t * t).sum(1)
    idx = torch.empty(q.shape[0], 2, dtype=torch.long)
    dist = torch.empty(q.shape[0], 2, dtype=torch.float64)
    for start in range(0, q.shape[0], chunk):
        a = q[start:start + chunk]
        d2 = ((a * a).sum(1, keepdim=True) + t_sq[None] - 2.0 * (a @ t.T)).clamp_min_(0)
        vals, ids = d2.topk(2, dim=1, largest=False)
        # recompute the two winners' distances exactly (the expanded form loses digits near 0)
        exact = (a[:, None, :] - t[ids]).pow(2).sum(-1)
        order = exact.argsort(dim=1)
        idx[start:start + chunk] = ids.gather(1, order)
        dist[start:start + chunk] = exact.gather(1, order).sqrt()
    return NearestTraining(idx, dist)


def copy_summary(nn: NearestTraining, threshold: float = DEFAULT_THRESHOLD, top: int = 10) -> dict[str, Any]:
    """Copy rate by the ratio test and the ``top`` closest (sample, training image) pairs.

    Returns:
        ``{"copy_rate", "n_copies", "copies": [sample indices], "median_d1", "closest_pairs":
        [{"sample", "train", "d1", "d2", "ratio", "second", "is_copy"}, ...] (sorted by d1)}``.
    """
    if not 0 < threshold <= 1:
        raise GenimageError(f"copy threshold must be in (0, 1], got {threshold}")
    ratio = nn.ratio
    is_copy = ratio < threshold
    order = torch.argsort(nn.distance[:, 0], stable=True)[: max(0, top)]
    pairs = [
        {"sample": int(i), "train": int(nn.index[i, 0]), "second": int(nn.index[i, 1]),
         "d1": float(nn.distance[i, 0]), "d2": float(nn.distance[i, 1]), "ratio": float(ratio[i]),
         "is_copy": bool(is_copy[i])}
        for i in order
    ]
    return {
        "copy_rate": float(is_copy.double().mean()),
        "n_copies": int(is_copy.sum()),
        "copies": torch.nonzero(is_copy).flatten().tolist(),
        "median_d1": float(nn.distance[:, 0].median()),
        "median_ratio": float(ratio.median()),
        "closest_pairs": pairs,
    }


def memorization(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    feature_net=None,
    threshold: float = DEFAULT_THRESHOLD,
    top: int = 10,
    train_features: torch.Tensor | None = None,
    sample_features: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Nearest training images of each sample in pixel space and (optionally) feature space.

    Args:
        samples: Generated images ``(N, C, H, W)`` in ``[-1, 1]``.
        train_images: Training images ``(T, C, H, W)``, same ``C, H, W``.
        feature_net: A :class:`~genimage.metrics.features.FeatureNet` (or anything with
            ``.features(images)`` and ``.source``); ``None`` for pixel space only.
        threshold: Ratio-test threshold: a copy when ``d1 / d2 < threshold``.
        top: Number of closest pairs listed per space.
        train_features / sample_features: Precomputed features (skip recomputing them).

    Returns:
        ``{"threshold", "n_samples", "n_train", "pixel": copy_summary, "feature": copy_summary
        (if a net is given), "features": which features}``.
    """
    from genimage.metrics.features import check_images

    s = check_images(samples, what="samples")
    t = check_images(train_images, what="training images")
    if s.shape[1:] != t.shape[1:]:
        raise GenimageError(
            f"samples {tuple(s.shape[1:])} and training images {tuple(t.shape[1:])} differ in shape; "
            "pixel-space nearest neighbours need the same (C, H, W)"
        )
    out: dict[str, Any] = {"threshold": threshold, "n_samples": s.shape[0], "n_train": t.shape[0]}
    out["pixel"] = copy_summary(nearest_training(s.flatten(1), t.flatten(1)), threshold, top)
    if feature_net is not None:
        fs = sample_features if sample_features is not None else feature_net.features(s)
        ft = train_features if train_features is not None else feature_net.features(t)
        out["feature"] = copy_summary(nearest_training(fs, ft), threshold, top)
        out["features"] = feature_net.source
    else:
        out["features"] = "pixels only"
    return out
