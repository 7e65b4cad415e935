"""Learned detectors of generated images, one per built-in domain.

A watermark proves what carries it; images too small for a mark (8x8 digits) or whose mark
was destroyed need another test. Each detector is a small CNN
(:class:`~genimage.metrics.features.SmallCNN`) trained to tell real images of a domain from
samples of genimage's bundled model of that domain (``scripts/train_detectors.py``). It
learns that model's fingerprint, so it is evidence about *these* models. Its accuracy on
other generators is measured, not assumed (``benchmarks/detector_eval.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from genimage.metrics.features import FEATURES_DIR, FeatureNet, load_feature_net

DETECTORS_DIR = FEATURES_DIR.parent / "detectors"


def available_detectors() -> list[str]:
    if not DETECTORS_DIR.is_dir():
        return []
    return sorted(p.name for p in DETECTORS_DIR.iterdir() if (p / "config.json").is_file())


def load_detector(name: str | Path) -> FeatureNet:
    """A shipped detector by domain name (``digits``, ``shapes``) or a detector folder."""
    folder = DETECTORS_DIR / str(name) if (DETECTORS_DIR / str(name) / "config.json").is_file() else Path(name)
    return load_feature_net(folder)


def detector_for(channels: int, height: int, width: int) -> FeatureNet | None:
    """The shipped detector whose domain has images of exactly this shape, if any."""
    for name in available_detectors():
        det = load_detector(name)
        if (det.config.in_channels, det.config.image_size, det.config.image_size) == (channels, height, width):
            return det
    return None


def p_generated(images: torch.Tensor, detector: FeatureNet) -> torch.Tensor:
    """``(N,)`` probability that each image ``(N, C, H, W)`` in ``[-1, 1]`` is generated."""
    return detector.classify(images)[:, detector.config.class_names.index("generated")]
