"""A dataset over a folder of image files that never crashes a training run.

Layouts understood (the conventions users already have):

* **flat**: ``root/*.png`` (any depth; no labels);
* **class subfolders**: ``root/<class>/.../*.png`` -> ``label`` = index of ``<class>`` in
  the sorted folder names (``class_names``), as in torchvision's ``ImageFolder``. Used
  automatically when every image sits in a subfolder and there are at least 2 of them
  (``labels=True`` forces it, ``labels=False`` turns it off);
* **captions** from ``metadata.jsonl`` or ``metadata.csv`` (the Hugging Face
  ``imagefolder`` convention: one ``{"file_name": ..., "text": ...}`` object per line,
  ``file_name`` relative to the metadata file's folder; other fields such as
  ``"license"`` are kept for the manifest), or from a sidecar ``<stem>.txt`` next to
  each image. Metadata wins over a sidecar.

Every file is opened, verified and fully decoded once at construction, so bad files are
found before training starts: zero-byte, not an image, truncated, corrupt, over the
pixel cap (decompression bombs), unreadable, unsupported mode, a symlink resolving
outside ``root``, or listed in metadata but missing. With ``on_bad_file="skip"`` (the
default) they are left out and listed in ``bad_files``; with ``"fail"`` construction
raises :class:`~genimage.errors.GenimageError` naming them. A file that breaks *after*
the scan (deleted or rewritten mid-run) is reported the same way and replaced by the
next good image, so ``__getitem__`` never raises for a bad file.

Hidden files and folders (names starting with ``"."``) are ignored. Symlinked folders
are not descended into (a link inside ``root`` would list files twice, and could loop);
one that points outside ``root`` is reported.

Images are converted by :mod:`genimage.data.image_io` (EXIF orientation, alpha on white,
16-bit scaling), resized so the shorter side is ``image_size`` (bicubic), then cropped
to ``image_size x image_size`` at the center or at random, and optionally flipped
horizontally. Random crop/flip draw from a ``torch.Generator`` seeded from
``(seed, epoch, index)``, so item ``i`` of epoch ``e`` is the same in every run,
whatever the worker or batch order. Call :meth:`ImageFolderDataset.set_epoch` each epoch.

Items are ``{"image": FloatTensor (C, H, W) in [-1, 1], "label": int, "caption": str}``;
``"label"`` is present when the folder has classes, ``"caption"`` when any image has a
caption (images without one get ``""``, so batches always collate).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import posixpath
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
import torch
from tqdm import tqdm

from genimage.data.image_io import (
    DEFAULT_MAX_PIXELS,
    GRAYSCALE_MODES,
    IMAGE_EXTENSIONS,
    UNREADABLE,
    BadImageError,
    ImageInfo,
    load_image,
    pil_to_tensor,
    resize_shorter_side,
)
from genimage.data.manifest import atomic_write_text
from genimage.data.types import DatasetItem, ImageDataset, check_index
from genimage.errors import GenimageError

logger = logging.getLogger(__name__)

SYMLINK_OUTSIDE_ROOT = "symlink outside root"
MISSING = "missing"
"""Reason categories added by the folder scan (file-level ones live in ``image_io``)."""

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
PROGRESS_THRESHOLD = 1000
"""Show a progress bar while scanning when there are more image files than this."""


@dataclasses.dataclass(frozen=True)
class BadFile:
    """A file left out of the dataset.

    Attributes:
        path: Path relative to the dataset root, ``/``-separated.
        reason: Reason category, e.g. ``"truncated"``, ``"over pixel cap"`` (see
            :mod:`genimage.data.image_io` and this module).
        detail: The underlying error message.
    """

    path: str
    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One usable image found by the scan.

    Attributes:
        path: Path relative to the dataset root, ``/``-separated.
        info: Size (after EXIF orientation), source mode, format, byte count, SHA-256.
        label: Class index, or ``None`` when the folder has no classes.
        caption: Caption text, or ``None``.
        metadata: Extra fields from ``metadata.jsonl`` (e.g. ``"license"``).
    """

    path: str
    info: ImageInfo
    label: int | None = None
    caption: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


#: Aspect ratio beyond which an item is cut out of the source directly instead of resizing
#: the whole image first (a 1 x 60000 strip would otherwise become size x 1.9M pixels at 32 px).
_MAX_ASPECT = 8


def _shorter_side_size(w: int, h: int, size: int) -> tuple[int, int]:
    """The size :func:`~genimage.data.image_io.resize_shorter_side` would give ``(w, h)``."""
    if min(w, h) == size:
        return w, h
    return (size, max(size, round(h * size / w))) if w <= h else (max(size, round(w * size / h)), size)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed for one (seed, epoch, index) triple (NumPy SeedSequence)."""
    mask = (1 << 64) - 1
    state = np.random.SeedSequence([seed & mask, epoch & mask, index & mask]).generate_state(2)
    return (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class ImageFolderDataset(ImageDataset):
    """Images (with optional class labels and captions) from a folder on disk.

    Args:
        root: The image folder.
        image_size: Output height and width in pixels (shorter side resized to it, then cropped).
        crop: ``"center"`` or ``"random"`` crop after resizing.
        flip: Randomly flip horizontally with probability 1/2.
        on_bad_file: ``"skip"`` (leave bad files out, list them in ``bad_files``) or
            ``"fail"`` (raise :class:`GenimageError` listing them).
        max_pixels: Largest ``width * height`` accepted; bigger files are reported as
            ``"over pixel cap"`` (decompression-bomb guard). ``None``: only PIL's own
            limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``) applies.
        seed: Seed of the random crop/flip; item ``i`` of epoch ``e`` depends only on
            ``(seed, e, i)``.
        channels: 3 (RGB, default; grayscale files are repeated to 3 channels), 1
            (grayscale; colour files reduced to luma), or ``"auto"`` (1 if every good
            file is grayscale, else 3).
        labels: ``None`` to infer class subfolders (see module docstring), ``True`` to
            require them, ``False`` to ignore them.
        caption_key: Metadata field holding the caption; ``None`` uses ``"text"``, or
            ``"caption"`` if a metadata file has no ``"text"`` field.
        progress: Show a progress bar while scanning; ``None`` shows it for more than
            1000 files.

    Attributes:
        num_classes: Number of classes, or ``None``.
        class_names: Sorted class folder names, or ``None``.
        has_captions: Whether items carry a ``"caption"``.
        image_size: Output size.
        channels: Output channels (1 or 3).
        records: The usable images, sorted by path.
        bad_files: Files left out, sorted by path (grows if a file breaks mid-run).
        ignored_files: Number of non-image files ignored (not counting captions/metadata).
        epoch: Current epoch for random augmentation (:meth:`set_epoch`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int = 32,
        crop: Literal["center", "random"] = "center",
        flip: bool = False,
        on_bad_file: Literal["skip", "fail"] = "skip",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int = 0,
        channels: int | Literal["auto"] = 3,
        labels: bool | None = None,
        caption_key: str | None = None,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(image_size, int) or image_size < 1:
            raise GenimageError(f"image_size must be a positive integer, got {image_size!r}")
        if crop not in ("center", "random"):
            raise GenimageError(f"crop must be 'center' or 'random', got {crop!r}")
        if on_bad_file not in ("skip", "fail"):
            raise GenimageError(f"on_bad_file must be 'skip' or 'fail', got {on_bad_file!r}")
        if channels not in (1, 3, "auto"):
            raise GenimageError(f"channels must be 1, 3 or 'auto', got {channels!r}")
        if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
            raise GenimageError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
        self.root = Path(root)
        if not self.root.exists():
            raise GenimageError(f"image folder {str(self.root)!r} does not exist; check the path")
        if not self.root.is_dir():
            raise GenimageError(f"{str(self.root)!r} is not a folder; pass a folder of images")
        self.image_size = image_size
        self.crop = crop
        self.flip = bool(flip)
        self.on_bad_file = on_bad_file
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self.epoch = 0
        self._channels_option = channels
        self._labels_option = labels
        self._caption_key = caption_key
        self._root_real = self.root.resolve()
        self.bad_files: list[BadFile] = []
        self._broken_at_runtime: set[str] = set()

        images, sidecars, metadata_files, self.ignored_files = self._walk()
        self.class_names = self._infer_classes(images)
        self.num_classes = len(self.class_names) if self.class_names is not None else None
        meta = self._read_metadata(metadata_files, set(images))
        self.records = self._validate(images, sidecars, meta, progress)
        self.bad_files.sort(key=lambda b: b.path)

        if channels == "auto":
            gray = all(r.info.mode in GRAYSCALE_MODES for r in self.records)
            self.channels = 1 if gray and self.records else 3
        else:
            self.channels = int(channels)
        self.has_captions = any(r.caption is not None for r in self.records)

        if self.bad_files and on_bad_file == "fail":
            shown = ", ".join(f"{b.path} ({b.reason})" for b in self.bad_files[:10])
            more = f" and {len(self.bad_files) - 10} more" if len(self.bad_files) > 10 else ""
            raise GenimageError(
                f"{len(self.bad_files)} bad file(s) in {str(self.root)!r}: {shown}{more}; "
                "fix or remove them, or use on_bad_file='skip'"
            )
        if not self.records:
            if not images:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS)[:6])
                raise GenimageError(
                    f"no image files ({exts}, ...) found in {str(self.root)!r}; put images there, "
                    "flat or one subfolder per class"
                )
            raise GenimageError(
                f"no usable images in {str(self.root)!r}: all {len(images)} image file(s) are bad "
                f"(first: {self.bad_files[0].path}, {self.bad_files[0].reason})"
            )
        if self.bad_files:
            logger.warning(
                "skipped %d bad file(s) in %s (see dataset.bad_files)", len(self.bad_files), self.root
            )

    # ------------------------------------------------------------------ scanning

    def _rel(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def _inside_root(self, path: str) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(self._root_real)

    def _walk(self) -> tuple[list[str], dict[str, str], list[str], int]:
        """Find image files, caption sidecars and metadata files (all relative paths)."""
        images: list[str] = []
        sidecars: dict[str, str] = {}  # "dir/stem" -> relative path of the .txt
        metadata_files: list[str] = []
        ignored = 0

        def onerror(exc: OSError) -> None:
            self.bad_files.append(BadFile(self._rel(exc.filename), UNREADABLE, str(exc.strerror)))

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=onerror):
            keep = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if _is_hidden(d):
                    continue
                if os.path.islink(full):
                    if not self._inside_root(full):
                        target = os.path.realpath(full)
                        self.bad_files.append(BadFile(self._rel(full), SYMLINK_OUTSIDE_ROOT, f"-> {target}"))
                    continue
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                if _is_hidden(name):
                    continue
                full = os.path.join(dirpath, name)
                rel = self._rel(full)
                ext = os.path.splitext(name)[1].lower()
                wanted = ext in IMAGE_EXTENSIONS or ext == ".txt" or name in METADATA_FILES
                if not wanted:
                    ignored += 1
                    continue
                if os.path.islink(full) and not self._inside_root(full):
                    target = os.path.realpath(full)
                    self.bad_files.append(BadFile(rel, SYMLINK_OUTSIDE_ROOT, f"-> {target}"))
                    continue
                if name in METADATA_FILES:
                    metadata_files.append(rel)
                elif ext == ".txt":
                    sidecars[posixpath.splitext(rel)[0]] = rel
                else:
                    images.append(rel)
        images.sort()
        return images, sidecars, sorted(metadata_files), ignored

    def _infer_classes(self, images: list[str]) -> list[str] | None:
        if self._labels_option is False or not images:
            return None
        tops = {rel.split("/", 1)[0] if "/" in rel else None for rel in images}
        if None in tops:
            if self._labels_option:
                flat = next(rel for rel in images if "/" not in rel)
                raise GenimageError(
                    f"labels=True needs every image inside a class subfolder of {str(self.root)!r}, "
                    f"but {flat!r} is at the top level; move it or use labels=None"
                )
            return None
        if len(tops) < 2 and not self._labels_option:
            return None
        return sorted(t for t in tops if t is not None)

    def _read_metadata(self, metadata_files: list[str], images: set[str]) -> dict[str, dict[str, Any]]:
        """Parse metadata.jsonl/.csv files into {image rel path: {"caption": ..., extra fields}}."""
        out: dict[str, dict[str, Any]] = {}
        for meta_rel in metadata_files:
            rows = self._metadata_rows(meta_rel)
            key = self._caption_key
            if key is None:
                has_text = any("text" in row for _, row in rows)
                key = "text" if has_text or not any("caption" in row for _, row in rows) else "caption"
            base = posixpath.dirname(meta_rel)
            for where, row in rows:
                name = row.get("file_name")
                if not isinstance(name, str) or not name:
                    raise GenimageError(f"{where}: missing 'file_name'; each entry needs the image's file name")
                rel = posixpath.normpath(posixpath.join(base, name))
                if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
                    raise GenimageError(f"{where}: file_name {name!r} points outside the dataset folder")
                if rel in out:
                    raise GenimageError(f"{where}: {rel!r} is listed twice in the metadata; keep one entry")
                if rel not in images:
                    if not os.path.lexists(self.root / rel):
                        self.bad_files.append(BadFile(rel, MISSING, f"listed in {meta_rel} but not found"))
                    continue
                caption = row.get(key)
                extra = {k: v for k, v in row.items() if k not in ("file_name", key)}
                out[rel] = {"caption": caption if isinstance(caption, str) else None, "extra": extra}
        return out

    def _metadata_rows(self, meta_rel: str) -> list[tuple[str, dict[str, Any]]]:
        path = self.root / meta_rel
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise GenimageError(f"cannot read {path}: {exc}; fix its permissions or encoding (UTF-8)") from None
        rows: list[tuple[str, dict[str, Any]]] = []
        if meta_rel.endswith(".csv"):
            for i, row in enumerate(csv.DictReader(text.splitlines()), start=2):
                rows.append((f"{meta_rel}:{i}", dict(row)))
            return rows
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GenimageError(f"{meta_rel}:{i}: invalid JSON ({exc.msg}); fix or delete the line") from None
            if not isinstance(row, dict):
                raise GenimageError(f"{meta_rel}:{i}: expected a JSON object like {{\"file_name\": ..., \"text\": ...}}")
            rows.append((f"{meta_rel}:{i}", row))
        return rows

    def _sidecar_caption(self, rel: str | None) -> str | None:
        if rel is None:
            return None
        try:
            return (self.root / rel).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as exc:
            logger.warning("cannot read caption file %s: %s", rel, exc)
            return None

    def _validate(
        self,
        images: list[str],
        sidecars: dict[str, str],
        meta: dict[str, dict[str, Any]],
        progress: bool | None,
    ) -> list[ImageRecord]:
        show = len(images) > PROGRESS_THRESHOLD if progress is None else progress
        class_index = {c: i for i, c in enumerate(self.class_names or [])}
        records = []
        for rel in tqdm(images, desc=f"checking {self.root.name}", unit="img", disable=not show):
            try:
                _, info = load_image(self.root / rel, max_pixels=self.max_pixels, verify=True)
            except BadImageError as exc:
                self.bad_files.append(BadFile(rel, exc.reason, exc.detail))
                continue
            entry = meta.get(rel)
            if entry is not None and entry["caption"] is not None:
                caption = entry["caption"]
            else:
                caption = self._sidecar_caption(sidecars.get(posixpath.splitext(rel)[0]))
            label = class_index[rel.split("/", 1)[0]] if self.class_names is not None else None
            extra = dict(entry["extra"]) if entry is not None else {}
            records.append(ImageRecord(rel, info, label, caption, extra))
        return records

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops/flips ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The ``torch.Generator`` used for item ``index`` in the current epoch."""
        return torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> DatasetItem:
        n = len(self.records)
        index = check_index(index, n)
        for step in range(n):
            rec = self.records[(index + step) % n]
            if rec.path in self._broken_at_runtime:
                continue
            try:
                img, _ = load_image(self.root / rec.path, channels=self.channels, max_pixels=self.max_pixels)
            except BadImageError as exc:
                self._broken_at_runtime.add(rec.path)
                self.bad_files.append(BadFile(rec.path, exc.reason, f"after scan: {exc.detail}"))
                logger.warning("image %s became unusable (%s); using the next one", rec.path, exc.reason)
                continue
            return self._make_item(index, rec, img)
        raise GenimageError(f"every image in {str(self.root)!r} became unreadable during the run; check the disk")

    def _make_item(self, index: int, rec: ImageRecord, img: Any) -> DatasetItem:
        s = self.image_size
        src_w, src_h = img.size
        extreme = max(src_w, src_h) > _MAX_ASPECT * min(src_w, src_h)
        if extreme:  # a thin strip: only the crop's region is resampled, not a size x (size * aspect) image
            w, h = _shorter_side_size(src_w, src_h, s)
        else:
            img = resize_shorter_side(img, s)
            w, h = img.size
        x, y, do_flip = (w - s) // 2, (h - s) // 2, False
        if self.crop == "random" or self.flip:
            u = torch.rand(3, generator=self.generator(index)).tolist()
            if self.crop == "random":
                x, y = min(int(u[0] * (w - s + 1)), w - s), min(int(u[1] * (h - s + 1)), h - s)
            do_flip = self.flip and u[2] < 0.5
        if extreme:
            fx, fy = src_w / w, src_h / h
            crop = img.resize((s, s), Image.Resampling.BICUBIC, box=(x * fx, y * fy, (x + s) * fx, (y + s) * fy))
        else:
            crop = img.crop((x, y, x + s, y + s))
        image = pil_to_tensor(crop)
        if do_flip:
            image = image.flip(-1)
        item: DatasetItem = {"image": image}
        if self.num_classes is not None:
            item["label"] = int(rec.label)  # type: ignore[arg-type]
        if self.has_captions:
            item["caption"] = rec.caption or ""
        return item

    # ------------------------------------------------------------------ reports

    def write_bad_files_report(self, path: str | os.PathLike[str]) -> Path:
        """Write ``bad_files`` atomically; returns the path written.

        Args:
            path: A file (``.tsv`` -> tab-separated with a header; anything else -> JSON
                lines ``{"path", "reason", "detail"}``) or an existing folder (e.g. a run
                folder), which gets ``bad_files.jsonl``. An empty report is still written,
                to show the check ran.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "bad_files.jsonl"
        if path.suffix.lower() == ".tsv":
            clean = lambda s: s.replace("\t", " ").replace("\n", " ")  # noqa: E731
            lines = ["path\treason\tdetail"]
            lines += [f"{clean(b.path)}\t{b.reason}\t{clean(b.detail)}" for b in self.bad_files]
        else:
            lines = [json.dumps(dataclasses.asdict(b), ensure_ascii=False) for b in self.bad_files]
        return atomic_write_text(path, "".join(line + "\n" for line in lines))

    def manifest_info(self) -> dict[str, Any]:
        """Everything :func:`genimage.data.manifest.build_manifest` records about this folder."""
        files = []
        for r in self.records:
            entry: dict[str, Any] = {
                "path": r.path,
                "sha256": r.info.sha256,
                "bytes": r.info.num_bytes,
                "width": r.info.width,
                "height": r.info.height,
                "mode": r.info.mode,
                "label": r.label,
                "class_name": self.class_names[r.label] if self.class_names and r.label is not None else None,
                "caption": r.caption,
            }
            if "license" in r.metadata:
                entry["license"] = r.metadata["license"]
            if r.metadata:
                entry["metadata"] = r.metadata
            files.append(entry)
        return {
            "kind": "image_folder",
            "root": str(self._root_real),
            "options": {
                "image_size": self.image_size,
                "crop": self.crop,
                "flip": self.flip,
                "on_bad_file": self.on_bad_file,
                "max_pixels": self.max_pixels,
                "seed": self.seed,
                "channels": self._channels_option,
                "labels": self._labels_option,
                "caption_key": self._caption_key,
            },
            "counts": {
                "images": len(self.records),
                "bad_files": len(self.bad_files),
                "ignored_files": self.ignored_files,
                "classes": self.num_classes,
                "captioned": sum(r.caption is not None for r in self.records),
            },
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "has_captions": self.has_captions,
            "num_items": len(self.records),
            "files": files,
            "bad_files": [dataclasses.asdict(b) for b in self.bad_files],
        }

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, images={len(self)}, bad={len(self.bad_files)}, "
            f"image_size={self.image_size}, channels={self.channels}, classes={self.num_classes}, "
            f"captions={self.has_captions})"
        )
