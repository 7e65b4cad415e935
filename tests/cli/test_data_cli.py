"""Tests for ``genimage data inspect`` (genimage.cli.data) and genimage.data.inspect."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genimage.cli.data import app
from genimage.data.inspect import format_report, inspect_dataset
from genimage.errors import GenimageError

runner = CliRunner()


def _folder(tmp_path: Path) -> Path:
    """2 classes of varied sizes/modes, captions for some, plus two bad files."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    files = {
        "cat/a.png": Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
        "cat/b.png": Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA"),
        "cat/c.jpg": Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)),
        "dog/d.png": Image.fromarray(rng.integers(0, 256, (100, 80), dtype=np.uint8)),
    }
    for rel, img in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
    (root / "dog" / "e.png").write_bytes((root / "cat" / "a.png").read_bytes())  # a duplicate
    (root / "dog" / "zero.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("not an image")
    meta = [{"file_name": "cat/a.png", "text": "a striped cat", "license": "CC0"}, {"file_name": "dog/d.png", "text": "a dog"}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return root


def test_inspect_folder_prints_summary_and_writes_grid(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect", str(root), "--image-size", "16"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "items: 5 usable, 2 bad, 0 other files ignored" in out
    assert "original width  min/median/max: 30 / 40 / 80" in out
    assert "original height min/median/max: 20 / 40 / 100" in out
    assert "modes: RGB 3, RGBA 1, L 1" in out
    assert "captions: 2 (2 unique)" in out and "'a striped cat'" in out
    assert "labels: 2 classes: cat 3, dog 2" in out
    assert "duplicates: 1" in out
    assert "dog/zero.png: zero-byte" in out and "dog/text.jpg: not an image" in out
    grid = Image.open(tmp_path / "inspect_grid.png")  # default path, in the working directory
    assert grid.size == (3 * 18 + 2, 2 * 18 + 2)  # 5 images of 16 px: 3 per row, 2 px padding


def test_inspect_options_write_manifest_report_and_json(tmp_path):
    root = _folder(tmp_path)
    grid, manifest, report = tmp_path / "g" / "grid.png", tmp_path / "m.json", tmp_path / "bad.tsv"
    args = ["inspect", str(root), "--grid", str(grid), "--manifest", str(manifest), "--bad-files-report", str(report)]
    result = runner.invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["num_items"] == 5 and data["labels"]["counts"] == {"cat": 3, "dog": 2}
    assert data["grid_count"] == 5 and Path(data["grid_path"]) == grid and grid.exists()
    assert {b["reason"] for b in data["bad_files"]} == {"zero-byte", "not an image"}
    m = json.loads(manifest.read_text())
    assert m["kind"] == "image_folder" and len(m["files"]) == 5
    assert report.read_text().splitlines()[0] == "path\treason\tdetail"


def test_grid_is_capped_at_64_images(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(70):
        Image.new("L", (4, 4), i * 3).save(root / f"{i:02d}.png")
    report = inspect_dataset(str(root), grid_path=tmp_path / "grid.png", image_size=4)
    assert report.num_items == 70 and report.grid_count == 64
    assert Image.open(tmp_path / "grid.png").size == (8 * 6 + 2, 8 * 6 + 2)
    assert report.channels == 3 and report.captions["count"] == 0 and report.labels is None
    text = format_report(report)
    assert "captions: none" in text and "labels: none" in text
    assert inspect_dataset(str(root), grid_path=None).grid_path is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "no/such/folder"], "does not exist"),
        (["inspect", "shapes"], "builtin:shapes"),  # a likely typo gets a hint
        (["inspect", "{empty}"], "no image files"),
        (["inspect", "{empty}", "--opt", "x=1"], "--opt"),
        (["inspect", "builtin:shapes", "--opt", "novalue"], "KEY=VALUE"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{empty}", str(tmp_path / "empty")) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "inspect_grid.png").exists()


class _ToyBuiltin(torch.utils.data.Dataset):
    num_classes, class_names, has_captions, channels = 2, ["even", "odd"], True, 1

    def __init__(self, image_size: int, length: int, seed: int, **kwargs) -> None:
        self.image_size, self.length, self.seed, self.kwargs = image_size, length, seed, kwargs

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        img = torch.full((1, self.image_size, self.image_size), -1.0 + 2.0 * i / max(1, self.length - 1))
        return {"image": img, "label": i % 2, "caption": f"item {i % 3}"}


def test_builtin_wiring_with_a_stand_in_module(tmp_path, monkeypatch):
    """Checks argument passing and the report for builtin:NAME without the real module."""
    calls = []

    def load_builtin(name, *, image_size=None, split="train", seed=0, length=None, **kwargs):
        calls.append((name, image_size, split, seed, length, kwargs))
        if name != "toy":
            raise GenimageError(f"unknown dataset {name!r}; choose one of: toy")
        return _ToyBuiltin(image_size or 8, length or 10, seed, **kwargs)

    fake = types.ModuleType("genimage.data.builtin")
    fake.load_builtin = load_builtin
    monkeypatch.setitem(sys.modules, "genimage.data.builtin", fake)
    manifest = tmp_path / "m.json"
    args = ["inspect", "builtin:toy", "--length", "7", "--seed", "3", "--split", "eval", "--opt", "hard=true"]
    result = runner.invoke(app, args + ["--opt", "mode=x", "--grid", str(tmp_path / "g.png"), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    assert calls == [("toy", None, "eval", 3, 7, {"hard": True, "mode": "x"})]
    assert "builtin:toy (built-in dataset)" in result.stdout
    assert "labels: 2 classes: even 4, odd 3" in result.stdout
    assert "captions: 7 (3 unique)" in result.stdout
    assert Image.open(tmp_path / "g.png").size == (3 * 10 + 2, 3 * 10 + 2)
    m = json.loads(manifest.read_text())  # the toy has no manifest_info: the CLI records how it loaded it
    assert (m["kind"], m["name"], m["seed"], m["args"]["length"], m["args"]["hard"]) == ("builtin", "toy", 3, 7, True)
    bad = runner.invoke(app, ["inspect", "builtin:nope", "--no-grid"])
    assert bad.exit_code == 2 and "unknown dataset 'nope'" in bad.stderr


def test_real_builtin_if_available(tmp_path):
    pytest.importorskip("genimage.data.builtin")
    result = runner.invoke(
        app, ["inspect", "builtin:shapes", "--length", "16", "--image-size", "16", "--grid", str(tmp_path / "g.png")]
    )
    if result.exit_code == 2 and "shapes" in result.stderr:
        pytest.skip(f"builtin shapes not available: {result.stderr.strip()}")
    assert result.exit_code == 0, result.output
    assert "items: 16" in result.stdout and (tmp_path / "g.png").exists()
