"""Atomic file writes: a file is either the old one or the complete new one, never half.

Every writer in genimage (weights, configs, checkpoints' ``latest`` pointer, manifests,
PNGs, grids) goes through :func:`atomic_path`: write to a hidden temporary file in the same
folder, fsync it, ``os.replace`` it onto the target, fsync the folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from genimage.errors import GenimageError

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; some writers (safetensors) create files 0600


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, what: str = "", needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Parent folders are created. If the body raises, the temporary file is removed and
    ``path`` is left untouched; a full disk (``ENOSPC``/``EDQUOT``) becomes one
    :class:`~genimage.utils.diskspace.DiskFullError` line naming ``path`` and the free space.

    Args:
        path: The file to write.
        what: What the file is ("PNG", "manifest", ...), for a disk-full message.
        needed: About how many bytes the file takes, for a disk-full message (``None``: unknown).
    """
    from genimage.utils.diskspace import disk_full_error, is_disk_full

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path, what, needed) from None
        raise
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, _FILE_MODE)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, GenimageError):
            raise disk_full_error(path, what, needed) from None
        raise
    fsync_path(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, what: str = "") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``Path(path)``. ``what`` names
    the file in a disk-full message (see :func:`atomic_path`)."""
    data = text.encode("utf-8")
    with atomic_path(path, what=what, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)
