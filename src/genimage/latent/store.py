"""Publish a folder of files atomically: all of it under its final name, or none of it."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Callable

from genimage.utils.atomic import fsync_path
from genimage.utils.diskspace import disk_full_error, is_disk_full, tree_bytes


def write_folder_atomically(folder: str | os.PathLike[str], write: Callable[[Path], None], *,
                            what: str = "cache folder") -> Path:
    """Call ``write(tmp)`` to fill a hidden temporary sibling of ``folder``, fsync it and rename
    it to ``folder`` (replacing a stale one). If ``write`` raises, nothing is left behind; a
    full disk becomes one :class:`~genimage.utils.diskspace.DiskFullError` line naming
    ``folder`` (``what`` says what it is).

    Files inside should themselves be written with :mod:`genimage.utils.weights` (atomic,
    fsynced), so the rename publishes complete files only.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.mkdir()
        write(tmp)
        fsync_path(tmp)
        if folder.exists():  # a stale or damaged entry under the same name
            stale = folder.parent / f".{folder.name}.stale.{secrets.token_hex(4)}"
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException as exc:
        written = tree_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(folder, what, needed=getattr(exc, "needed", None) and written + exc.needed) from None
        raise
    fsync_path(folder.parent)
    return folder
