"""Malicious model files for the reliability tests: pickles that would create a sentinel
file if anything ever unpickled them (used by tests/utils/test_malicious_files.py)."""

from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import torch


class _Reduce:
    """Pickles as ``fn(*args)``: what unpickling it runs."""

    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _touch_code(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('pwned')"


def payloads(sentinel: Path) -> dict[str, bytes]:
    """Name -> file bytes; unpickling any of them writes ``sentinel``."""
    s = str(sentinel)
    system = _Reduce(os.system, (f"touch {s}",))
    out: dict[str, bytes] = {}
    for proto in (0, 1, 2, 4, 5):
        out[f"os.system-protocol{proto}"] = pickle.dumps(system, protocol=proto)
    out["subprocess.call"] = pickle.dumps(_Reduce(subprocess.call, (["touch", s],)), protocol=4)
    out["subprocess.Popen"] = pickle.dumps(_Reduce(subprocess.Popen, (["touch", s],)), protocol=2)
    out["builtins.eval"] = pickle.dumps(_Reduce(builtins.eval, (_touch_code(sentinel),)), protocol=4)
    out["builtins.exec"] = pickle.dumps(_Reduce(builtins.exec, (_touch_code(sentinel),)), protocol=3)
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "evil": system}, buf)  # a torch.save zip archive carrying the payload
    out["torch.save-zip"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "evil": system}, buf, _use_new_zipfile_serialization=False)
    out["torch.save-legacy"] = buf.getvalue()
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as z:  # an archive inside an archive
        z.writestr("archive/data.pkl", pickle.dumps(system, protocol=2))
        z.writestr("inner.pt", out["torch.save-zip"])
    out["nested-zip"] = nested.getvalue()
    out["gzip-pickle"] = gzip.compress(pickle.dumps(system, protocol=4))
    header = b'{"__metadata__":{"format":"pt"}}'
    out["safetensors-prefix-then-pickle"] = len(header).to_bytes(8, "little") + header + pickle.dumps(system, 4)
    return out


#: File names a payload is planted under (the extension says nothing about the content).
NAMES = ("model.safetensors", "model.pt", "model.ckpt", "model.bin")
