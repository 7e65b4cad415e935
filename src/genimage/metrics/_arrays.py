"""Input checks shared by the metrics: feature matrices as CPU float64 tensors."""

from __future__ import annotations

import numpy as np
import torch

from genimage.errors import GenimageError

ArrayLike = torch.Tensor | np.ndarray


def as_f64(x: ArrayLike) -> torch.Tensor:
    """``x`` (tensor, array or nested list) as a CPU float64 tensor."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.detach().to("cpu", torch.float64)


def as_features(x: ArrayLike, what: str, min_rows: int = 1) -> torch.Tensor:
    """Check that ``x`` is a finite ``(N, D)`` matrix with ``N >= min_rows``; return it as float64."""
    f = as_f64(x)
    if f.ndim != 2:
        raise GenimageError(f"{what} must be a 2-D array (N, D), got shape {tuple(f.shape)}")
    if f.shape[0] < min_rows:
        raise GenimageError(f"{what} needs at least {min_rows} rows, got {f.shape[0]}")
    if not torch.isfinite(f).all():
        raise GenimageError(f"{what} contain NaN or inf; check the images fed to the feature network")
    return f


def check_same_dim(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Raise unless ``a`` and ``b`` have the same feature dimension."""
    if a.shape[1] != b.shape[1]:
        raise GenimageError(
            f"{what}: feature sets must share D; got {tuple(a.shape)} and {tuple(b.shape)} "
            "(were they made by the same feature network?)"
        )
