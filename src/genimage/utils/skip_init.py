"""Build a network whose weights are about to be loaded without initialising them first.

``nn.Conv2d`` / ``nn.Linear`` run Kaiming-uniform initialisation in their constructors; for
a model loaded from ``model.safetensors`` that work is thrown away at once (about 0.1 s of a
3 s ``genimage generate`` on the bundled shapes model). Inside :func:`skip_weight_init` the
``torch.nn.init`` functions return their tensor untouched, so parameters keep the
uninitialised memory of ``torch.empty`` until ``load_state_dict`` fills them. Callers must
load every parameter and buffer afterwards (strictly); tensors computed without
``torch.nn.init`` (``torch.eye``, ``torch.ones`` buffers) are built as usual.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_SKIPPED = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
            "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Within the block, ``torch.nn.init.*_`` are no-ops (restored afterwards, also on error)."""
    saved = {name: getattr(torch.nn.init, name) for name in _SKIPPED if hasattr(torch.nn.init, name)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, _keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _keep(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor
