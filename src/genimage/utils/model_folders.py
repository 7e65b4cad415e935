"""Check a third-party model folder (a transformers text encoder, a tokenizer) before any
library reads it: it must not ask for its own code, and its weights must be safetensors.

``transformers`` will import Python files shipped in a folder when asked to
(``trust_remote_code``, ``auto_map`` in ``config.json`` / ``tokenizer_config.json``) and can
unpickle ``pytorch_model.bin``. genimage never does either: :func:`check_transformers_folder`
refuses such a folder *by content* with one line, before ``transformers`` touches it, and the
loaders pass ``use_safetensors=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

from genimage.errors import GenimageError
from genimage.utils.weights import sniff_weights_format, validate_safetensors_file

#: Extensions of files that hold pickled objects in the PyTorch / Python world.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".h5",
                             ".msgpack"})
#: JSON files whose keys can make transformers import code from the folder.
_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")
_MAX_FILES = 10_000


def _files(folder: Path) -> list[Path]:
    out = []
    for p in folder.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):  # .git, .cache: not loaded
            continue
        if p.is_file():
            out.append(p)
            if len(out) > _MAX_FILES:
                raise GenimageError(f"{folder} holds more than {_MAX_FILES} files; is it really a model folder?")
    return out


def check_transformers_folder(folder: str | Path, what: str = "model folder") -> list[Path]:
    """Refuse ``folder`` unless it is safe to hand to ``transformers`` with
    ``local_files_only=True, use_safetensors=True``.

    Args:
        folder: The local folder (a transformers / sentence-transformers model, a tokenizer).
        what: What it is, for the messages ("text encoder", "tokenizer", ...).

    Returns:
        The ``*.safetensors`` files found (headers already validated).

    Raises:
        GenimageError: a ``*.py`` file or an ``auto_map`` / ``trust_remote_code`` entry (the
            folder would run its own code), a pickle file (by content, whatever its name),
            a file with a pickle extension that is not safetensors, no ``*.safetensors``
            weights at all, or a malformed safetensors header.
    """
    folder = Path(folder)
    files = _files(folder)
    for p in files:
        if p.suffix == ".py":
            raise GenimageError(f"{what} {folder} ships Python code ({p.relative_to(folder)}); genimage never runs "
                                "code from model folders (trust_remote_code); use a folder of config, tokenizer and "
                                "safetensors files only")
    for p in files:
        if p.suffix != ".json" or p.stat().st_size > 50_000_000:
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if p.name in ("config.json", "tokenizer_config.json"):
                raise GenimageError(f"{what} {folder}: {p.name} is not valid JSON") from None
            continue
        if isinstance(data, dict):
            for key in _CODE_KEYS:
                if data.get(key):
                    raise GenimageError(f"{what} {folder}: {p.relative_to(folder)} asks for custom code ({key!r}); "
                                        "genimage never runs code from model folders (trust_remote_code); use a "
                                        "model whose architecture transformers ships")
    weights = []
    for p in files:
        kind = sniff_weights_format(p)
        if kind in ("pickle", "zip-pickle"):
            raise GenimageError(f"{what} {folder}: {p.relative_to(folder)} is a pickle file (unpickling can run "
                                "arbitrary code); genimage loads safetensors only: convert it in a trusted session "
                                "with save_pretrained(..., safe_serialization=True) and remove the pickle")
        if p.suffix in PICKLE_SUFFIXES and kind != "safetensors":
            raise GenimageError(f"{what} {folder}: {p.relative_to(folder)} is not a safetensors file; genimage loads "
                                "weights from *.safetensors only: remove it or convert it in a trusted session")
        if p.suffix == ".safetensors" or kind == "safetensors":
            validate_safetensors_file(p)
            weights.append(p)
    return sorted(weights)


def check_text_encoder_folder(folder: str | Path, model_dir: str | Path) -> list[Path]:
    """:func:`check_transformers_folder` on a text encoder ``folder`` whose transformer is in
    ``model_dir`` (``folder`` itself or a sentence-transformers subfolder), which must hold
    ``*.safetensors`` weights. Returns those weight files."""
    weights = [p for p in check_transformers_folder(folder, "text encoder") if p.parent == Path(model_dir)]
    if not weights:
        raise GenimageError(f"text encoder {folder} holds no *.safetensors weights next to its config.json; genimage "
                            "loads safetensors only: save it with save_pretrained(..., safe_serialization=True)")
    return weights
