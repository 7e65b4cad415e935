"""Refuse diverged models and garbage outputs instead of writing black or grey images.

A run that diverged (NaN/inf weights, or weights so large that every output saturates)
would otherwise sample images that clamp to all-black or turn NaN into grey, and exit 0.
:func:`check_finite_weights` runs when a model is loaded, :func:`check_generated` on what a
sampler returns, before it is clamped to ``[-1, 1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from genimage.errors import GenimageError

#: Generated images live in ``[-1, 1]``; a sampler output beyond this magnitude is garbage
#: from a diverged model. Far above what an under-trained model gives: an 8-step eps-prediction
#: model on the vp-cosine path returned 2.7e3 before clamping (its x0 divides by a small alpha).
OUTPUT_LIMIT = 1e8


def check_finite_weights(state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Raise a :class:`GenimageError` naming ``source`` if a floating tensor of ``state``
    holds NaN or inf."""
    for name, t in state.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise GenimageError(f"{source} holds non-finite weights ({bad} of {t.numel()} values of {name!r} are NaN "
                                "or inf): the training run diverged; use an earlier checkpoint or train again "
                                "with a lower --lr")


def check_generated(x: torch.Tensor, what: str = "the model") -> None:
    """Raise a :class:`GenimageError` if generated ``x`` ``(N, C, H, W)`` is NaN/inf or far
    outside ``[-1, 1]`` (beyond :data:`OUTPUT_LIMIT`)."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise GenimageError(f"{what} produced non-finite values ({bad} of {x.numel()} NaN or inf) instead of an "
                            "image; its weights have probably diverged (retrain with a lower --lr or use an earlier "
                            "checkpoint)")
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > OUTPUT_LIMIT:
        raise GenimageError(f"{what} produced values of magnitude {peak:.3g} where images lie in [-1, 1]; its "
                            "weights have probably diverged (retrain with a lower --lr or use an earlier checkpoint)")
