"""One call for sample quality: FD, KID, precision/recall/density/coverage and memorization.

All distances are computed in the features of one network (a genimage domain feature net
by name, or any object with ``.features(images)`` and ``.source`` such as the optional
Inception); the result says which (``"features"``), because numbers in different feature
spaces are not comparable. Features are extracted once per image set, in batches, without
gradients.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.metrics.features import check_images, load_feature_net
from genimage.metrics.frechet import frechet_distance
from genimage.metrics.kid import kernel_inception_distance
from genimage.metrics.memorization import DEFAULT_THRESHOLD, memorization
from genimage.metrics.prdc import prdc


def as_image_batch(images, what: str) -> torch.Tensor:
    """A ``(N, C, H, W)`` tensor, or a dataset of ``{"image": ...}`` items, as one float32 tensor."""
    if isinstance(images, torch.Tensor):
        return check_images(images, what=what)
    if hasattr(images, "__len__") and hasattr(images, "__getitem__"):
        if len(images) == 0:
            raise GenimageError(f"{what} is empty")
        first = images[0]
        if isinstance(first, dict) and "image" in first:
            return check_images(torch.stack([images[i]["image"] for i in range(len(images))]), what=what)
        if isinstance(first, torch.Tensor):
            return check_images(torch.stack([images[i] for i in range(len(images))]), what=what)
    raise GenimageError(f"{what} must be an image tensor (N, C, H, W) or a dataset of {{'image': ...}} items")


def evaluate_samples(
    samples,
    reference,
    feature_net_name="digits",
    train_images=None,
    *,
    k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    copy_threshold: float = DEFAULT_THRESHOLD,
    top: int = 10,
    labels=None,
    batch_size: int | None = None,
    reference_features: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Compare generated samples with reference images (and, optionally, the training set).

    Args:
        samples: Generated images ``(N, C, H, W)`` in ``[-1, 1]`` (or a dataset of items).
        reference: Real images to compare with, e.g. the eval split (tensor or dataset).
        feature_net_name: A shipped feature-net name (``"digits"``, ``"shapes"``), a folder,
            or a loaded net (anything with ``.features`` and ``.source``).
        train_images: Training images; when given, adds the memorization report.
        k: Neighbour index of precision/recall/density/coverage.
        kid_subsets, kid_subset_size, seed: KID subsets (capped at the smaller set size) and their seed.
        copy_threshold: Ratio-test threshold of the memorization check.
        top: Closest pairs listed in the memorization report.
        labels: Intended classes of the samples; with the digits net, scored by recognizability.
        batch_size: Images per feature-network batch (default: the network's own, 500 for the
            domain nets, 50 for Inception at 299 px).
        reference_features: ``net``'s features of ``reference`` when already computed (a
            caller measuring several sample sets against one reference extracts them once).

    Returns:
        ``{"features", "n_samples", "n_reference", "fd", "kid", "kid_std", "kid_subset_size",
        "precision", "recall", "density", "coverage", "k", "seconds"}``, plus ``"memorization"``
        with training images and ``"recognizability"`` for 1-channel images with the digits net.
    """
    t0 = time.perf_counter()
    net = load_feature_net(feature_net_name) if isinstance(feature_net_name, str) else feature_net_name
    s = as_image_batch(samples, "samples")
    r = as_image_batch(reference, "reference")
    if s.shape[1] != r.shape[1]:
        raise GenimageError(f"samples have {s.shape[1]} channel(s) but the reference images {r.shape[1]}")
    if s.shape[0] < 2 or r.shape[0] < 2:
        raise GenimageError(f"need at least 2 samples and 2 reference images, got {s.shape[0]} and {r.shape[0]}")
    batch = {} if batch_size is None else {"batch_size": batch_size}
    fs = net.features(s, **batch)
    fr = net.features(r, **batch) if reference_features is None else reference_features
    if fr.shape != (r.shape[0], fs.shape[1]):
        raise GenimageError(f"reference_features {tuple(fr.shape)} do not match {r.shape[0]} reference images "
                            f"x {fs.shape[1]} features")
    kid = kernel_inception_distance(fs, fr, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    out: dict[str, Any] = {
        "features": net.source,
        "n_samples": int(s.shape[0]),
        "n_reference": int(r.shape[0]),
        "fd": frechet_distance(fs, fr),
        "kid": kid["kid"],
        "kid_std": kid["kid_std"],
        "kid_subset_size": kid["subset_size"],
    }
    out.update(prdc(fr, fs, k=k))
    if train_images is not None:
        if train_images is reference:  # same images: reuse their features
            t, ft = r, fr
        else:
            t = as_image_batch(train_images, "training images")
            ft = net.features(t, **batch)
        out["memorization"] = memorization(
            s, t, net, threshold=copy_threshold, top=top, sample_features=fs, train_features=ft,
        )
    if getattr(net, "name", "") == "digits" and s.shape[1] == 1:
        from genimage.metrics.recognizability import digits_recognizability

        out["recognizability"] = digits_recognizability(s, labels=labels, net=net)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
