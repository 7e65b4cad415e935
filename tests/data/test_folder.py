"""Tests for genimage.data.folder.ImageFolderDataset: layouts, captions, bad files, augmentation."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genimage.data import image_io
from genimage.data.folder import MISSING, SYMLINK_OUTSIDE_ROOT, BadFile, ImageFolderDataset
from genimage.data.image_io import pil_to_tensor
from genimage.errors import GenimageError

RNG = np.random.default_rng(0)


def _rand(h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _save(path: Path, img: Image.Image, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b"")


def make_corpus(tmp_path: Path) -> tuple[Path, set[str], dict[str, str]]:
    """Good files of many modes/formats mixed with one bad file per reason category.

    Returns ``(root, good relative paths, {bad relative path: reason})``; meant for
    ``max_pixels=5000``.
    """
    root = tmp_path / "corpus"
    outside = tmp_path / "outside"
    outside.mkdir()
    _save(outside / "secret.png", Image.fromarray(_rand(8, 8)))
    good = {
        "cat/rgb.png": Image.fromarray(_rand(20, 24)),
        "cat/photo.jpg": Image.fromarray(_rand(30, 18)),
        "cat/alpha.png": Image.fromarray(_rand(16, 16, 4), "RGBA"),
        "cat/deep.png": Image.fromarray(RNG.integers(0, 65536, (12, 14), dtype=np.uint16)),
        "dog/gray.bmp": Image.fromarray(_rand(10, 10, 1)),
        "dog/anim.gif": Image.fromarray(_rand(12, 12)).convert("P"),
        "dog/ink.tif": Image.new("CMYK", (9, 11), (10, 20, 30, 40)),
        "dog/sub/nested.webp": Image.fromarray(_rand(20, 20)),
    }
    for rel, img in good.items():
        _save(root / rel, img)
    png = (root / "cat/rgb.png").read_bytes()
    mid = len(png) // 2
    bad = {
        "cat/empty.png": (b"", image_io.ZERO_BYTE),
        "cat/notes.png": (b"these are my notes, not a picture\n", image_io.NOT_AN_IMAGE),
        "cat/half.png": (png[:mid], image_io.TRUNCATED),
        "cat/flipped.png": (png[:mid] + bytes(b ^ 0xFF for b in png[mid : mid + 8]) + png[mid + 8 :], image_io.CORRUPT),
        "dog/bomb.png": (_png_header_only(20_000, 20_000), image_io.OVER_PIXEL_CAP),
    }
    for rel, (data, _) in bad.items():
        (root / rel).write_bytes(data)
    reasons = {rel: reason for rel, (_, reason) in bad.items()}
    _save(root / "dog/huge.png", Image.new("RGB", (100, 100)))  # 10_000 px > max_pixels=5000
    reasons["dog/huge.png"] = image_io.OVER_PIXEL_CAP
    os.symlink(root / "dog/gone.png", root / "dog/dangling.png")  # target does not exist
    reasons["dog/dangling.png"] = image_io.UNREADABLE
    os.symlink(outside / "secret.png", root / "dog/escape.png")
    reasons["dog/escape.png"] = SYMLINK_OUTSIDE_ROOT
    os.symlink(outside, root / "dog/escape_dir")
    reasons["dog/escape_dir"] = SYMLINK_OUTSIDE_ROOT
    os.symlink(root / "cat/rgb.png", root / "dog/alias.png")  # inside root: fine
    good["dog/alias.png"] = good["cat/rgb.png"]
    (root / "README.md").write_text("not an image, ignored\n")
    _save(root / "cat/.hidden.png", Image.new("RGB", (4, 4)))  # hidden: ignored, not reported
    meta = [
        {"file_name": "cat/rgb.png", "text": "a random cat", "license": "CC-BY-4.0", "author": "me"},
        {"file_name": "cat/half.png", "text": "broken"},
        {"file_name": "dog/missing.png", "text": "never existed"},
    ]
    (root / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    reasons["dog/missing.png"] = MISSING
    (root / "dog/gray.txt").write_text("a gray dog\n")
    return root, set(good), reasons


def test_corpus_every_good_used_every_bad_reported(tmp_path):
    root, good, bad = make_corpus(tmp_path)
    ds = ImageFolderDataset(root, image_size=8, max_pixels=5000)
    assert {r.path for r in ds.records} == good
    assert {b.path: b.reason for b in ds.bad_files} == bad
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.ignored_files == 1 and ds.has_captions and ds.channels == 3
    items = [ds[i] for i in range(len(ds))]
    for rec, item in zip(ds.records, items):
        assert item["image"].shape == (3, 8, 8)
        assert item["image"].min() >= -1 and item["image"].max() <= 1
        assert item["label"] == (0 if rec.path.startswith("cat/") else 1)
    captions = {rec.path: item["caption"] for rec, item in zip(ds.records, items)}
    assert captions["cat/rgb.png"] == "a random cat"
    assert captions["dog/gray.bmp"] == "a gray dog"  # sidecar .txt
    assert captions["cat/photo.jpg"] == ""  # no caption -> "" so batches collate
    rec = next(r for r in ds.records if r.path == "cat/rgb.png")
    assert rec.metadata == {"license": "CC-BY-4.0", "author": "me"}
    modes = {r.path: r.info.mode for r in ds.records}
    assert modes["cat/deep.png"] == "I;16" and modes["dog/ink.tif"] == "CMYK"
    # Every item collates into one batch.
    batch = torch.utils.data.default_collate(items)
    assert batch["image"].shape == (len(good), 3, 8, 8) and batch["label"].dtype == torch.int64


def test_on_bad_file_fail_names_the_files(tmp_path):
    root, _, bad = make_corpus(tmp_path)
    with pytest.raises(GenimageError) as info:
        ImageFolderDataset(root, max_pixels=5000, on_bad_file="fail")
    msg = str(info.value)
    assert f"{len(bad)} bad file(s)" in msg and "\n" not in msg
    assert "cat/half.png (truncated)" in msg and "dog/bomb.png (over pixel cap)" in msg


def test_bad_files_report(tmp_path):
    root, _, bad = make_corpus(tmp_path)
    ds = ImageFolderDataset(root, max_pixels=5000)
    run = tmp_path / "run"
    run.mkdir()
    path = ds.write_bad_files_report(run)
    assert path == run / "bad_files.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["path"]: r["reason"] for r in rows} == bad
    tsv = ds.write_bad_files_report(run / "bad.tsv").read_text().splitlines()
    assert tsv[0] == "path\treason\tdetail" and len(tsv) == len(bad) + 1
    assert all(len(line.split("\t")) == 3 for line in tsv)
    assert sorted(p.name for p in run.iterdir()) == ["bad.tsv", "bad_files.jsonl"]  # no temp files left


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_is_unreadable(tmp_path):
    root = tmp_path / "d"
    _save(root / "ok.png", Image.fromarray(_rand(8, 8)))
    locked = _save(root / "locked.png", Image.fromarray(_rand(8, 8)))
    locked.chmod(0)
    try:
        ds = ImageFolderDataset(root, image_size=8)
    finally:
        locked.chmod(0o644)
    assert ds.bad_files == [BadFile("locked.png", image_io.UNREADABLE, ds.bad_files[0].detail)]


def test_user_errors(tmp_path):
    with pytest.raises(GenimageError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenimageError, match="no image files"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"")
    (tmp_path / "junk" / "b.jpg").write_text("hello")
    with pytest.raises(GenimageError, match="no usable images.*all 2"):
        ImageFolderDataset(tmp_path / "junk")
    for bad_kwargs in ({"crop": "middle"}, {"on_bad_file": "ignore"}, {"image_size": 0}, {"channels": 2}):
        with pytest.raises(GenimageError):
            ImageFolderDataset(tmp_path / "junk", **bad_kwargs)


def test_layouts_flat_and_labels_option(tmp_path):
    flat = tmp_path / "flat"
    for name in ("b.png", "a.png", "deeper/c.png"):
        _save(flat / name, Image.fromarray(_rand(10, 10)))
    ds = ImageFolderDataset(flat, image_size=8)
    assert [r.path for r in ds.records] == ["a.png", "b.png", "deeper/c.png"]
    assert ds.num_classes is None and ds.class_names is None and not ds.has_captions
    assert set(ds[0]) == {"image"}
    with pytest.raises(GenimageError, match="labels=True"):
        ImageFolderDataset(flat, labels=True)
    one_class = tmp_path / "one"
    _save(one_class / "only" / "x.png", Image.fromarray(_rand(10, 10)))
    assert ImageFolderDataset(one_class, image_size=8).num_classes is None  # a single folder is not a class split
    ds1 = ImageFolderDataset(one_class, image_size=8, labels=True)
    assert ds1.class_names == ["only"] and ds1[0]["label"] == 0
    classes = tmp_path / "classes"
    for cls in ("zebra", "Apple", "mango"):
        _save(classes / cls / "x.png", Image.fromarray(_rand(10, 10)))
    ds2 = ImageFolderDataset(classes, image_size=8)
    assert ds2.class_names == ["Apple", "mango", "zebra"]
    assert [ds2[i]["label"] for i in range(3)] == [0, 1, 2]
    assert ImageFolderDataset(classes, image_size=8, labels=False).num_classes is None


def test_metadata_csv_caption_key_and_precedence(tmp_path):
    root = tmp_path / "d"
    for name in ("a.png", "b.png", "sub/c.png"):
        _save(root / name, Image.fromarray(_rand(10, 10)))
    (root / "a.txt").write_text("sidecar a")
    (root / "b.txt").write_text("sidecar b")
    (root / "metadata.csv").write_text('file_name,caption,license\na.png,"csv a, with comma",MIT\n')
    (root / "sub" / "metadata.jsonl").write_text(json.dumps({"file_name": "c.png", "caption": "nested c"}) + "\n")
    ds = ImageFolderDataset(root, image_size=8)
    caps = {r.path: r.caption for r in ds.records}
    assert caps == {"a.png": "csv a, with comma", "b.png": "sidecar b", "sub/c.png": "nested c"}
    assert ds.records[0].metadata == {"license": "MIT"}


def test_bad_metadata_is_a_user_error(tmp_path):
    root = tmp_path / "d"
    _save(root / "a.png", Image.fromarray(_rand(10, 10)))
    (root / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "ok"}\n{"file_name": oops}\n')
    with pytest.raises(GenimageError, match="metadata.jsonl:2: invalid JSON"):
        ImageFolderDataset(root)
    (root / "metadata.jsonl").write_text('{"text": "no file name"}\n')
    with pytest.raises(GenimageError, match="file_name"):
        ImageFolderDataset(root)
    (root / "metadata.jsonl").write_text('{"file_name": "../a.png", "text": "escape"}\n')
    with pytest.raises(GenimageError, match="outside"):
        ImageFolderDataset(root)


def test_center_crop_is_exact(tmp_path):
    arr = _rand(20, 40)  # H=20, W=40: the shorter side already equals image_size
    _save(tmp_path / "d" / "a.png", Image.fromarray(arr))
    ds = ImageFolderDataset(tmp_path / "d", image_size=20)
    expected = pil_to_tensor(Image.fromarray(arr[:, 10:30]))
    assert torch.equal(ds[0]["image"], expected)
    assert torch.equal(ds[-1]["image"], expected)
    with pytest.raises(IndexError):
        ds[1]


def test_random_crop_and_flip_are_reproducible(tmp_path):
    arr = _rand(16, 28)
    root = tmp_path / "d"
    for i in range(4):
        _save(root / f"{i}.png", Image.fromarray(arr))
    windows = [pil_to_tensor(Image.fromarray(arr[:, x : x + 16])) for x in range(13)]
    ds = ImageFolderDataset(root, image_size=16, crop="random", flip=True, seed=3)
    twin = ImageFolderDataset(root, image_size=16, crop="random", flip=True, seed=3)
    other_seed = ImageFolderDataset(root, image_size=16, crop="random", flip=True, seed=4)
    seen_offsets, seen_flips, per_epoch = set(), set(), []
    for epoch in range(6):
        for d in (ds, twin, other_seed):
            d.set_epoch(epoch)
        imgs = [ds[i]["image"] for i in range(4)]
        per_epoch.append(torch.stack(imgs))
        for i, img in enumerate(imgs):
            assert torch.equal(img, twin[i]["image"])  # same (seed, epoch, index) -> same item
            assert torch.equal(img, ds[i]["image"])  # and stable on re-reading
            matches = [(x, f) for x, w in enumerate(windows) for f in (0, 1) if torch.equal(img, w.flip(-1) if f else w)]
            assert len(matches) >= 1  # a real window of the image, possibly mirrored
            seen_offsets.add(matches[0][0])
            seen_flips.add(matches[0][1])
    assert len(seen_offsets) >= 4 and seen_flips == {0, 1}
    assert not torch.equal(per_epoch[0], per_epoch[1])  # epochs differ
    other_seed.set_epoch(0)
    ds.set_epoch(0)
    assert not all(torch.equal(ds[i]["image"], other_seed[i]["image"]) for i in range(4))
    gen_a, gen_b = ds.generator(2), ds.generator(2)
    assert torch.equal(torch.rand(4, generator=gen_a), torch.rand(4, generator=gen_b))


def test_dataloader_workers_match_direct_indexing(tmp_path):
    root = tmp_path / "d"
    for i in range(6):
        _save(root / f"{i}.png", Image.fromarray(_rand(12, 18)))
    ds = ImageFolderDataset(root, image_size=8, crop="random", flip=True, seed=1)
    ds.set_epoch(2)
    direct = torch.stack([ds[i]["image"] for i in range(6)])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    loaded = torch.cat([b["image"] for b in loader])
    assert torch.equal(loaded, direct)


def test_file_broken_after_scan_is_replaced_and_reported(tmp_path):
    root = tmp_path / "d"
    for i in range(3):
        _save(root / f"{i}.png", Image.new("RGB", (8, 8), (i * 100, 0, 0)))
    ds = ImageFolderDataset(root, image_size=8)
    (root / "1.png").write_bytes(b"overwritten mid-run")
    item = ds[1]
    assert torch.equal(item["image"], ds[2]["image"])  # the next good image stands in
    assert [(b.path, b.reason) for b in ds.bad_files] == [("1.png", image_io.NOT_AN_IMAGE)]
    ds[1]
    assert len(ds.bad_files) == 1  # reported once
    for i in (0, 2):
        (root / f"{i}.png").unlink()
    with pytest.raises(GenimageError, match="unreadable"):
        ds[0]


def test_channels_auto_and_grayscale(tmp_path):
    root = tmp_path / "gray"
    _save(root / "a.png", Image.fromarray(_rand(10, 10, 1)))
    _save(root / "b.png", Image.fromarray(RNG.integers(0, 65536, (10, 10), dtype=np.uint16)))
    auto = ImageFolderDataset(root, image_size=8, channels="auto")
    assert auto.channels == 1 and auto[0]["image"].shape == (1, 8, 8)
    rgb = ImageFolderDataset(root, image_size=8)
    img = rgb[0]["image"]
    assert img.shape == (3, 8, 8) and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    _save(root / "c.png", Image.fromarray(_rand(10, 10)))
    assert ImageFolderDataset(root, image_size=8, channels="auto").channels == 3


def test_exif_rotated_size_is_recorded(tmp_path):
    img = Image.fromarray(_rand(10, 30))
    exif = img.getexif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    _save(tmp_path / "d" / "r.jpg", img, exif=exif)
    rec = ImageFolderDataset(tmp_path / "d", image_size=8).records[0]
    assert (rec.info.width, rec.info.height) == (10, 30)


def test_progress_bar_option(tmp_path, capsys):
    _save(tmp_path / "d" / "a.png", Image.new("RGB", (8, 8)))
    ImageFolderDataset(tmp_path / "d", image_size=8, progress=True)
    assert "checking" in capsys.readouterr().err
    ImageFolderDataset(tmp_path / "d", image_size=8)  # 1 file: no bar by default
    assert "checking" not in capsys.readouterr().err

