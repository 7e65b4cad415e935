"""A full disk becomes one clear error line, never a traceback or a half-written file.

Every genimage writer (:mod:`genimage.utils.atomic`, :mod:`genimage.latent.store`,
checkpoints) writes into a temporary file or folder first; when the disk (or a quota)
fills up (``ENOSPC`` / ``EDQUOT``) the temporary is removed, the previous file stays as it
was, and :class:`DiskFullError` says which path could not be written, how much space is
free there and about how much the write needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

from genimage.errors import GenimageError

#: ``errno`` values that mean "no room": the disk is full or a quota is exhausted.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(GenimageError):
    """A write failed because its file system is full.

    Attributes:
        path: What could not be written.
        free: Bytes free on that file system when the error was raised (``None`` if unknown).
        needed: About how many bytes the write needs (``None`` if unknown).
    """

    def __init__(self, message: str, path: Path, free: int | None, needed: int | None) -> None:
        super().__init__(message)
        self.path, self.free, self.needed = path, free, needed


#: How writers that are not Python file objects (safetensors' Rust serializer) report those errnos.
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded",
                  *(f"(os error {e})" for e in sorted(NO_SPACE_ERRNOS)))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` means "no space left": an ``OSError`` with ``ENOSPC``/``EDQUOT``, a
    :class:`DiskFullError`, or a library error carrying that OS error in its message (the
    safetensors serializer raises ``SafetensorError: ... No space left on device (os error 28)``)."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    return isinstance(exc, Exception) and any(t in str(exc) for t in _NO_SPACE_TEXT)


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def format_bytes(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if n is None:
        return "an unknown amount"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def disk_full_error(path: str | os.PathLike[str], what: str = "", needed: int | None = None,
                    kept: str = "") -> DiskFullError:
    """The one-line error for a write to ``path`` that ran out of space.

    Args:
        path: File or folder that could not be written.
        what: What it is ("checkpoint", "PNG", ...), for the message.
        needed: About how many bytes the write needs (``None``: unknown).
        kept: What was left intact, e.g. ``"the previous checkpoint step-00000010 is intact"``
            (default: ``"<path> was left as it was"``).
    """
    path = Path(path)
    free = free_bytes(path)
    need = f"it needs about {format_bytes(needed)}" if needed else "it needs more than that"
    kept = kept or f"{path.name} was left as it was"
    label = f"{what} {path}" if what else str(path)
    msg = (f"no space left on the device while writing {label} ({format_bytes(free)} free there; {need}); "
           f"{kept}; free some space and run the command again")
    return DiskFullError(msg, path, free, needed)


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Turn a full disk inside the block (e.g. appending to a log) into :func:`disk_full_error`."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc) and not isinstance(exc, GenimageError):
            raise disk_full_error(path, what) from None
        raise


def tree_bytes(path: str | os.PathLike[str]) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0
