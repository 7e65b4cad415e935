"""ONNX export of a backbone at fixed input shapes, cached on disk.

The backbone is traced by ``torch.onnx.export`` (the TorchScript exporter, opset 17) with
positional inputs ``x, c_noise`` and the conditioning tensors in key order. Shape checks and
the batch-of-one branch in the backbones are Python code on shapes, so a trace is valid
for exactly the shapes it was made with: the cache key holds them. The file lives in
``<genimage cache>/runtimes/<key>.onnx`` (the cache root of :mod:`genimage.latent.cache`:
``$GENIMAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/genimage``, else ``~/.cache/genimage``) and is
written atomically (:func:`genimage.utils.atomic.atomic_path`), so a killed export leaves
no half file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from genimage.errors import GenimageError

OPSET = 17


class PositionalBackbone(nn.Module):
    """``network(x, c_noise, {keys[i]: cond[i]})`` called with positional tensors, as the exporter needs."""

    def __init__(self, network: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.network, self.keys = network, tuple(keys)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        return self.network(x, c_noise, dict(zip(self.keys, cond)) if self.keys else None)


def runtime_cache_dir() -> Path:
    """``<genimage cache root>/runtimes``."""
    from genimage.latent.cache import default_cache_dir

    return default_cache_dir().parent / "runtimes"


def export_key(identity: dict[str, Any], signature: Sequence[tuple[str, tuple[int, ...], str]]) -> str:
    """sha256 of the model identity (weights sha256, merged LoRAs, backbone config), the input
    signature ``(name, shape, dtype)`` and the torch / genimage versions that traced it."""
    from genimage import __version__

    blob = json.dumps({"model": identity, "inputs": [list(map(str, s)) for s in signature], "opset": OPSET,
                       "torch": torch.__version__, "genimage": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_onnx(network: nn.Module, keys: Sequence[str], inputs: Sequence[torch.Tensor], identity: dict[str, Any],
                cache_dir: Path | None = None) -> Path:
    """The ONNX file of ``network`` at the shapes of ``inputs`` (``x, c_noise, *cond[keys]``),
    exported on the first call and read from the cache afterwards."""
    from genimage.utils.atomic import atomic_path

    names = ["x", "c_noise", *keys]
    signature = [(n, tuple(t.shape), str(t.dtype)) for n, t in zip(names, inputs)]
    path = (cache_dir or runtime_cache_dir()) / f"{export_key(identity, signature)}.onnx"
    if path.is_file():
        return path
    module = PositionalBackbone(network, keys).eval()
    try:
        with atomic_path(path, what="ONNX export") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks turned into constants
            torch.onnx.export(module, tuple(inputs), str(tmp), input_names=names, output_names=["out"],
                              opset_version=OPSET, dynamo=False)
    except GenimageError:
        raise
    except Exception as exc:  # an operator the exporter lacks, a model over protobuf's 2 GB, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenimageError(f"could not export this backbone to ONNX ({first[:200]}); use --runtime eager") from None
    return path
