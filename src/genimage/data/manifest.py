"""Dataset manifests: a JSON record of exactly which data a run was trained on.

A manifest lets anyone answer "what went into this model?" later: for an image folder,
every file with the SHA-256 of its bytes, its caption, label and license (from
``metadata.jsonl``); for a built-in procedural dataset, its name, arguments and seed
(enough to regenerate it bit for bit). It also stores the dataset options and counts,
and a ``fingerprint``: the SHA-256 of the file list, equal for equal data.

Any dataset can be recorded: :func:`build_manifest` calls its ``manifest_info()`` method
(a JSON-ready dict) when it has one, and otherwise records what its public attributes
say (class, length, image size, ...). The manifest is deterministic (no timestamps), so
two manifests of the same data compare equal.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from genimage.utils.atomic import atomic_write_text

MANIFEST_FORMAT = "genimage-dataset-manifest"
MANIFEST_VERSION = 1

_ATTRS = ("image_size", "channels", "num_classes", "class_names", "has_captions")


def _jsonable(obj: Any) -> Any:
    """Recursively convert paths, tuples, sets and numpy/torch scalars to JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return repr(obj)


def _fingerprint(files: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.get('path')}\t{f.get('sha256')}\t{f.get('label')}\t{f.get('caption')}\n".encode())
    return h.hexdigest()


def build_manifest(dataset: Any, fallback_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Describe a dataset as a JSON-ready dict.

    Args:
        dataset: Any dataset. If it has a ``manifest_info() -> dict`` method, that dict is
            the body of the manifest (an image folder returns ``kind="image_folder"``,
            options, counts and ``files``; a built-in returns ``kind="builtin"``, its
            ``name``, ``args`` and ``seed``). Otherwise the manifest records the class
            name, ``len(dataset)`` and the standard dataset attributes.
        fallback_info: Used as the body when ``dataset`` has no ``manifest_info`` (e.g.
            the caller knows the ``{"kind": "builtin", "name", "args", "seed"}`` it
            loaded the dataset with).

    Returns:
        ``{"format", "version", "kind", ..., "num_items", "fingerprint"?}``. Standard
        attributes (``image_size``, ``channels``, ``num_classes``, ``class_names``,
        ``has_captions``) are filled in from the dataset when ``manifest_info`` omits them.
        ``fingerprint`` (SHA-256 over path, file hash, label and caption of every file)
        is added when there is a ``files`` list.
    """
    info_fn = getattr(dataset, "manifest_info", None)
    if callable(info_fn):
        info = dict(info_fn())
    elif fallback_info is not None:
        info = dict(fallback_info)
    else:
        cls = type(dataset)
        info = {"kind": "python", "class": f"{cls.__module__}.{cls.__qualname__}"}
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
    manifest.update(info)
    manifest.setdefault("kind", "unknown")
    for attr in _ATTRS:
        if attr not in manifest and hasattr(dataset, attr):
            manifest[attr] = getattr(dataset, attr)
    if "num_items" not in manifest:
        try:
            manifest["num_items"] = len(dataset)
        except TypeError:
            pass
    if isinstance(manifest.get("files"), list):
        manifest["fingerprint"] = _fingerprint(manifest["files"])
    return _jsonable(manifest)


def write_manifest(
    dataset: Any, path: str | os.PathLike[str], fallback_info: dict[str, Any] | None = None
) -> Path:
    """Build the manifest of ``dataset`` (:func:`build_manifest`) and write it atomically as JSON.

    Args:
        dataset: Any dataset (see :func:`build_manifest`).
        path: Output file, conventionally ``<run>/dataset_manifest.json``.
        fallback_info: See :func:`build_manifest`.

    Returns:
        The path written.
    """
    text = json.dumps(build_manifest(dataset, fallback_info), indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text, what="dataset manifest")
