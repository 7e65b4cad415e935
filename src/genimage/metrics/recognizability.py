"""Recognizability of generated digits by genimage's digits classifier.

A classifier-based score in the spirit of the Inception Score (Salimans et al., 2016, "Improved
Techniques for Training GANs", Sec. 4: confident predictions and all classes present), but
reported as plain fractions: the share of samples the classifier is confident about
(max class probability >= ``threshold``) and how many classes appear among those confident
predictions. The classifier (``load_feature_net("digits")``) was trained with outlier
exposure (see ``scripts/train_feature_nets.py``), so noise and blobs get low confidence.

The model-family goal "recognizable digits" reads: >= 90% of samples with confidence >= 0.9,
and all 10 classes among 1,000 samples.
"""

from __future__ import annotations

from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.metrics.features import check_images, load_feature_net, resize_images


def digits_recognizability(
    images: torch.Tensor,
    labels: torch.Tensor | list[int] | None = None,
    threshold: float = 0.9,
    net=None,
) -> dict[str, Any]:
    """Score digit images with the shipped digits classifier.

    Args:
        images: ``(N, 1, H, W)`` in ``[-1, 1]``; sizes other than 8x8 are resized to 8x8
            (area averaging when shrinking).
        labels: Intended class of each image (class-conditional samples), or ``None``.
        threshold: Confidence needed to count a prediction as recognized.
        net: A loaded digits :class:`~genimage.metrics.features.FeatureNet` (default: the shipped one).

    Returns:
        ``{"confident_fraction", "classes_present", "class_counts" (10 counts of confident
        predictions), "mean_confidence", "n", "threshold", "classifier"}`` plus, with labels,
        ``"accuracy_vs_labels"`` (argmax == label, over all samples) and
        ``"confident_accuracy_vs_labels"`` (confident and correct, over all samples).
    """
    if not 0.0 < threshold <= 1.0:
        raise GenimageError(f"threshold must be in (0, 1], got {threshold}")
    images = check_images(images, what="digit images")
    if images.shape[1] != 1:
        raise GenimageError(
            f"digits_recognizability takes 1-channel images (N, 1, H, W), got {images.shape[1]} channels"
        )
    net = net or load_feature_net("digits")
    probs = net.classify(resize_images(images, 8))
    conf, pred = probs.max(1)
    confident = conf >= threshold
    counts = torch.bincount(pred[confident], minlength=10)
    out: dict[str, Any] = {
        "n": int(images.shape[0]),
        "threshold": threshold,
        "confident_fraction": float(confident.double().mean()),
        "classes_present": int((counts > 0).sum()),
        "class_counts": counts.tolist(),
        "mean_confidence": float(conf.double().mean()),
        "classifier": net.source,
    }
    if labels is not None:
        y = torch.as_tensor(labels, dtype=torch.long).flatten()
        if y.shape[0] != images.shape[0]:
            raise GenimageError(f"got {y.shape[0]} labels for {images.shape[0]} images")
        if ((y < 0) | (y > 9)).any():
            raise GenimageError("digit labels must be in 0..9")
        correct = pred == y
        out["accuracy_vs_labels"] = float(correct.double().mean())
        out["confident_accuracy_vs_labels"] = float((correct & confident).double().mean())
    return out
