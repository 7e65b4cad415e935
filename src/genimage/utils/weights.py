"""Safe weight files: safetensors only, written atomically, identified by sha256.

Pickle-based checkpoints (``.pt``, ``.ckpt``, ``.bin``) can run arbitrary code when
loaded, so genimage refuses them by *content*, whatever the extension says.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genimage.errors import GenimageError
from genimage.utils.atomic import atomic_path, atomic_write_text

_PICKLE_HINT = (
    "genimage loads weights only from .safetensors files because unpickling can run arbitrary code; "
    "convert it yourself in a trusted session: safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"
)


def sniff_weights_format(path: Path) -> str:
    """``"safetensors"``, ``"pickle"``, ``"zip-pickle"`` or ``"unknown"`` by the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip-pickle"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise GenimageError(f"weights file not found: {path}")
    kind = sniff_weights_format(path)
    if kind in ("pickle", "zip-pickle"):
        raise GenimageError(f"{path} is a pickle-based PyTorch file, not safetensors; {_PICKLE_HINT}")
    if kind != "safetensors":
        raise GenimageError(f"{path} is not a safetensors file (bad header); is the file complete?")
    try:
        return load_file(str(path))
    except Exception as exc:  # corrupt body
        raise GenimageError(f"could not read {path} as safetensors: {exc}") from None


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` atomically (temporary file, fsync, rename)."""
    needed = sum(t.numel() * t.element_size() for t in tensors.values())
    with atomic_path(path, what="weights file", needed=needed) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def write_json_atomic(obj, path: str | Path, *, what: str = "") -> None:
    """Write JSON atomically (temporary file, fsync, rename); ``what`` names it in a disk-full message."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", what=what)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
