"""Tests for genimage.data.manifest: folder and built-in manifests, atomic writing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genimage.data.folder import ImageFolderDataset
from genimage.data.manifest import MANIFEST_FORMAT, atomic_write_text, build_manifest, write_manifest
from genimage.errors import GenimageError


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for rel in ("cat/a.png", "cat/b.png", "dog/c.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / rel)
    (root / "dog" / "broken.png").write_bytes(b"")
    meta = [
        {"file_name": "cat/a.png", "text": "a cat", "license": "CC0-1.0", "source": "camera"},
        {"file_name": "dog/c.png", "text": "a dog"},
    ]
    (root / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return root


def test_folder_manifest_records_files_hashes_captions_labels_license(tmp_path):
    root = _folder(tmp_path)
    ds = ImageFolderDataset(root, image_size=8, crop="random", flip=True, seed=5)
    m = build_manifest(ds)
    assert m["format"] == MANIFEST_FORMAT and m["kind"] == "image_folder"
    assert m["root"] == str(root.resolve())
    assert m["options"]["crop"] == "random" and m["options"]["seed"] == 5 and m["options"]["flip"] is True
    assert m["counts"] == {"images": 3, "bad_files": 1, "ignored_files": 0, "classes": 2, "captioned": 2}
    assert m["num_items"] == 3 and m["class_names"] == ["cat", "dog"] and m["has_captions"] is True
    files = {f["path"]: f for f in m["files"]}
    assert set(files) == {"cat/a.png", "cat/b.png", "dog/c.png"}
    for rel, f in files.items():
        assert f["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
        assert f["bytes"] == (root / rel).stat().st_size and (f["width"], f["height"]) == (12, 10)
    assert files["cat/a.png"]["caption"] == "a cat" and files["cat/a.png"]["license"] == "CC0-1.0"
    assert files["cat/a.png"]["metadata"] == {"license": "CC0-1.0", "source": "camera"}
    assert files["cat/b.png"]["caption"] is None and "license" not in files["cat/b.png"]
    assert (files["dog/c.png"]["label"], files["dog/c.png"]["class_name"]) == (1, "dog")
    assert m["bad_files"] == [{"path": "dog/broken.png", "reason": "zero-byte", "detail": "file is empty"}]
    json.dumps(m)  # JSON-ready


def test_fingerprint_is_stable_and_tracks_content(tmp_path):
    root = _folder(tmp_path)
    first = build_manifest(ImageFolderDataset(root, image_size=8))
    again = build_manifest(ImageFolderDataset(root, image_size=8))
    assert first == again  # deterministic: no timestamps
    Image.new("RGB", (12, 10), (1, 2, 3)).save(root / "cat" / "b.png")
    changed = build_manifest(ImageFolderDataset(root, image_size=8))
    assert changed["fingerprint"] != first["fingerprint"]


def test_write_manifest_is_atomic_and_overwrites(tmp_path):
    root = _folder(tmp_path)
    out = tmp_path / "run" / "dataset_manifest.json"
    out.parent.mkdir()
    out.write_text("old content")
    path = write_manifest(ImageFolderDataset(root, image_size=8), out)
    assert path == out
    data = json.loads(out.read_text())
    assert data["counts"]["images"] == 3
    assert [p.name for p in out.parent.iterdir()] == ["dataset_manifest.json"]  # temp file renamed away


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("genimage.data.manifest.os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


class _Procedural(torch.utils.data.Dataset):
    """A stand-in for a built-in procedural dataset."""

    num_classes, class_names, has_captions, image_size, channels = 3, ["a", "b", "c"], False, 16, 3

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.zeros(3, 16, 16), "label": i % 3}

    def manifest_info(self) -> dict:
        return {"kind": "builtin", "name": "toy", "args": {"length": self.n, "root": Path("/x")}, "seed": self.seed}


def test_builtin_manifest_records_name_args_seed(tmp_path):
    m = build_manifest(_Procedural(10, seed=7))
    assert (m["kind"], m["name"], m["seed"]) == ("builtin", "toy", 7)
    assert m["args"] == {"length": 10, "root": "/x"}
    assert (m["num_items"], m["num_classes"], m["class_names"], m["image_size"]) == (10, 3, ["a", "b", "c"], 16)
    assert "files" not in m and "fingerprint" not in m
    write_manifest(_Procedural(4, seed=1), tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["args"]["length"] == 4


def test_dataset_without_manifest_info():
    ds = torch.utils.data.TensorDataset(torch.zeros(5, 3, 4, 4))
    m = build_manifest(ds)
    assert m["kind"] == "python" and m["class"].endswith("TensorDataset") and m["num_items"] == 5
    info = {"kind": "builtin", "name": "toy", "args": {"length": 5}, "seed": 2}
    m = build_manifest(ds, fallback_info=info)
    assert (m["kind"], m["name"], m["seed"], m["num_items"]) == ("builtin", "toy", 2, 5)
    assert build_manifest(_Procedural(3, seed=9), fallback_info=info)["seed"] == 9  # manifest_info wins


def test_real_builtin_if_available():
    builtin = pytest.importorskip("genimage.data.builtin")
    try:
        ds = builtin.load_builtin("shapes", image_size=16, length=8, seed=3)
    except GenimageError as exc:
        pytest.skip(f"builtin 'shapes' not available: {exc}")
    m = build_manifest(ds)
    assert m["num_items"] == 8
    json.dumps(m)
    if hasattr(ds, "manifest_info"):
        assert m["kind"] == "builtin" and m.get("seed") == 3
