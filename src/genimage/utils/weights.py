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


#: Bytes per element of every safetensors dtype torch can hold.
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: Largest header genimage reads (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000
#: ``__metadata__`` key of the content checksum written by :func:`save_safetensors`.
DIGEST_KEY = "genimage.sha256"


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def validate_safetensors_file(path: str | Path) -> dict:
    """Check a safetensors file's header against the file before any library reads its body.

    The format (https://github.com/huggingface/safetensors, "Format"): 8 bytes little-endian
    header length ``N``, ``N`` bytes of JSON ``{name: {"dtype", "shape", "data_offsets":
    [begin, end]}, "__metadata__"?: {str: str}}``, then the data buffer. Checked: ``N`` within
    the file and below :data:`MAX_HEADER_BYTES`; valid UTF-8 JSON object without duplicate
    keys; known dtypes; non-negative integer shapes; ``data_offsets`` inside the buffer, each
    tensor's span exactly ``prod(shape) x dtype size`` bytes, the spans contiguous and
    non-overlapping from 0 to the end of the file (no gap, no trailing bytes). A huge declared
    shape therefore fails on arithmetic alone, before anything is allocated.

    Args:
        path: The file.

    Returns:
        The parsed header.

    Raises:
        GenimageError: One line naming the file and the first problem found.
    """
    path = Path(path)

    def bad(reason: str) -> GenimageError:
        return GenimageError(f"{path} is not a valid safetensors file: {reason}; is the file complete and from a "
                             "trusted source?")

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"it is {size} bytes long, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
            raise bad(f"its header length {n} does not fit a file of {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"its header is not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("its __metadata__ is not a mapping of strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name[:60]!r} is not described by exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {name[:60]!r} has unknown dtype {str(dtype)[:20]!r}")
        if (not isinstance(shape, list) or len(shape) > 64
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise bad(f"tensor {name[:60]!r} has an invalid shape {str(shape)[:60]}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"tensor {name[:60]!r} has invalid data_offsets {str(offsets)[:60]}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise bad(f"tensor {name[:60]!r} spans bytes {begin}..{end} of a {data_len}-byte data buffer")
        numel = 1
        for d in shape:
            numel *= d
        if numel * SAFETENSORS_DTYPES[dtype] != end - begin:
            raise bad(f"tensor {name[:60]!r} of shape {shape[:8]} and dtype {dtype} needs "
                      f"{numel * SAFETENSORS_DTYPES[dtype]} bytes but spans {end - begin}")
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            what = "overlaps the previous one" if begin < position else f"leaves a gap of {begin - position} bytes"
            raise bad(f"tensor {name[:60]!r} {what}")
        position = end
    if position != data_len:
        raise bad(f"{data_len - position} bytes follow the last tensor")
    return header


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (sorted by name): the checksum
    :func:`save_safetensors` records and :func:`load_safetensors` compares, so a relabelled
    dtype or a flipped bit does not load silently."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, refusing anything else with a clear message.

    Pickles are refused by content, the header is validated
    (:func:`validate_safetensors_file`) before the safetensors library reads the file, and a
    file written by :func:`save_safetensors` must match the checksum in its metadata (files
    written before genimage recorded one, or by other tools, load without the comparison).
    """
    path = Path(path)
    if not path.is_file():
        raise GenimageError(f"weights file not found: {path}")
    kind = sniff_weights_format(path)
    if kind in ("pickle", "zip-pickle"):
        raise GenimageError(f"{path} is a pickle-based PyTorch file, not safetensors; {_PICKLE_HINT}")
    if kind != "safetensors":
        raise GenimageError(f"{path} is not a safetensors file (bad header); is the file complete?")
    header = validate_safetensors_file(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # corrupt body
        raise GenimageError(f"could not read {path} as safetensors: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    recorded = header.get("__metadata__", {}).get(DIGEST_KEY)
    if recorded is not None and tensors_digest(tensors) != recorded:
        raise GenimageError(f"{path} is damaged: its tensors do not match the sha256 recorded when it was saved "
                            f"({recorded[:12]}...); restore it from a backup or an earlier checkpoint")
    return tensors


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` atomically (temporary file, fsync, rename), with their
    checksum (:func:`tensors_digest`) in the metadata under :data:`DIGEST_KEY`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    needed = sum(t.numel() * t.element_size() for t in tensors.values())
    metadata = {**(metadata or {}), DIGEST_KEY: tensors_digest(tensors)}
    with atomic_path(path, what="weights file", needed=needed) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


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
