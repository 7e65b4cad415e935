"""Look at a dataset before training on it: counts, sizes, modes, captions, labels, bad files.

:func:`inspect_dataset` accepts an image folder path or ``"builtin:NAME"`` and returns an
:class:`InspectReport`; :func:`format_report` renders it as text (what ``genimage data
inspect`` prints). A preview grid of up to 64 images, spread evenly over the dataset, is
saved as a PNG so you can see what the model will see (after resize and center crop).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from genimage.data.folder import BadFile, ImageFolderDataset
from genimage.data.image_io import DEFAULT_MAX_PIXELS, save_image_grid
from genimage.errors import GenimageError

BUILTIN_PREFIX = "builtin:"
DEFAULT_GRID_PATH = "inspect_grid.png"
DEFAULT_FOLDER_IMAGE_SIZE = 64


@dataclasses.dataclass
class InspectReport:
    """What :func:`inspect_dataset` found.

    Attributes:
        target: What was inspected (a folder path or ``builtin:NAME``).
        kind: ``"image_folder"`` or ``"builtin"``.
        num_items: Usable items.
        image_size: Output size of the items (pixels), if uniform.
        channels: Output channels of the items.
        original_sizes: For folders: ``{"width"|"height"|"pixels": {"min", "median", "max"}}``
            of the files as stored (after EXIF orientation); ``None`` for built-ins.
        modes: Count per source mode (``"RGB"``, ``"L"``, ``"I;16"``, ... or ``"tensor"``).
        formats: Count per file format (folders only).
        captions: ``{"count", "unique", "examples"}``; count 0 when there are none.
        labels: ``{"num_classes", "counts": {class name: count}}`` or ``None``.
        bad_files: Files left out, with reasons.
        ignored_files: Non-image files ignored (folders only).
        duplicates: Files whose bytes equal an earlier file's (folders only).
        upscaled: Files smaller than ``image_size`` that get upscaled (folders only).
        scanned: Items looked at for label/caption statistics (built-ins may be sampled).
        grid_path: Where the preview grid was written, or ``None``.
        grid_count: Images in the grid.
        source_info: How the dataset was loaded (built-ins: ``{"kind": "builtin", "name",
            "args", "seed"}``), usable as ``fallback_info`` of
            :func:`genimage.data.manifest.build_manifest`.
        dataset: The dataset object itself (not part of :meth:`to_dict`).
    """

    target: str
    kind: str
    num_items: int
    image_size: int | None = None
    channels: int | None = None
    original_sizes: dict[str, dict[str, float]] | None = None
    modes: dict[str, int] = dataclasses.field(default_factory=dict)
    formats: dict[str, int] = dataclasses.field(default_factory=dict)
    captions: dict[str, Any] = dataclasses.field(default_factory=dict)
    labels: dict[str, Any] | None = None
    bad_files: list[BadFile] = dataclasses.field(default_factory=list)
    ignored_files: int = 0
    duplicates: int = 0
    upscaled: int = 0
    scanned: int = 0
    grid_path: Path | None = None
    grid_count: int = 0
    source_info: dict[str, Any] | None = None
    dataset: Any = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (without the dataset object)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dataset"}
        out["bad_files"] = [dataclasses.asdict(b) for b in self.bad_files]
        out["grid_path"] = str(self.grid_path) if self.grid_path is not None else None
        return out


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _caption_summary(captions: list[str | None], n_examples: int = 3) -> dict[str, Any]:
    present = [c for c in captions if c is not None]
    examples = list(dict.fromkeys(c for c in present if c))[:n_examples]
    return {"count": len(present), "unique": len(set(present)), "examples": examples}


def _label_summary(labels: list[int], class_names: list[str] | None, num_classes: int | None) -> dict[str, Any]:
    counts = collections.Counter(labels)
    k = num_classes if num_classes is not None else (max(counts) + 1 if counts else 0)
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    return {"num_classes": k, "counts": {names[i]: counts.get(i, 0) for i in range(k)}}


def _spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) if k > 1 else 0 for i in range(k)]


def _write_grid(dataset: Any, n: int, path: str | os.PathLike[str], max_images: int) -> tuple[Path, int]:
    idx = _spread_indices(n, max_images)
    images = torch.stack([dataset[i]["image"] for i in idx])
    return save_image_grid(images, path), len(idx)


def _inspect_folder(path: str, image_size: int | None, max_pixels: int | None) -> InspectReport:
    p = Path(path)
    if not p.exists() and os.sep not in path and "/" not in path:
        raise GenimageError(
            f"image folder {path!r} does not exist; check the path, or write builtin:{path} "
            "for a built-in dataset"
        )
    size = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    ds = ImageFolderDataset(p, image_size=size, max_pixels=max_pixels, on_bad_file="skip")
    recs = ds.records
    seen: set[str] = set()
    duplicates = 0
    for r in recs:
        duplicates += r.info.sha256 in seen
        seen.add(r.info.sha256)
    return InspectReport(
        target=path,
        kind="image_folder",
        num_items=len(ds),
        image_size=ds.image_size,
        channels=ds.channels,
        original_sizes={
            "width": _stats([r.info.width for r in recs]),
            "height": _stats([r.info.height for r in recs]),
            "pixels": _stats([r.info.width * r.info.height for r in recs]),
        },
        modes=dict(collections.Counter(r.info.mode for r in recs).most_common()),
        formats=dict(collections.Counter(r.info.format for r in recs).most_common()),
        captions=_caption_summary([r.caption for r in recs]),
        labels=(
            _label_summary([r.label for r in recs], ds.class_names, ds.num_classes)  # type: ignore[misc]
            if ds.num_classes is not None
            else None
        ),
        bad_files=list(ds.bad_files),
        ignored_files=ds.ignored_files,
        duplicates=duplicates,
        upscaled=sum(min(r.info.width, r.info.height) < size for r in recs),
        scanned=len(recs),
        dataset=ds,
    )


def _inspect_builtin(
    name: str, image_size: int | None, split: str, seed: int, length: int | None,
    options: dict[str, Any], scan_limit: int,
) -> InspectReport:
    try:
        from genimage.data.builtin import load_builtin
    except ImportError as exc:
        raise GenimageError(f"built-in datasets are not available in this install ({exc})") from None
    if not name:
        raise GenimageError("write builtin:NAME, e.g. builtin:shapes")
    try:
        ds = load_builtin(name, image_size=image_size, split=split, seed=seed, length=length, **options)
    except TypeError as exc:
        raise GenimageError(f"bad options for builtin:{name}: {exc}") from None
    n = len(ds)
    if n == 0:
        raise GenimageError(f"builtin:{name} has no items for split={split!r}, length={length}")
    idx = _spread_indices(n, scan_limit)
    labels: list[int] = []
    captions: list[str | None] = []
    shapes: collections.Counter[tuple[int, ...]] = collections.Counter()
    for i in idx:
        item = ds[i]
        shapes[tuple(item["image"].shape)] += 1
        if "label" in item:
            labels.append(int(item["label"]))
        captions.append(item.get("caption"))
    (c, h, w), _ = shapes.most_common(1)[0]
    num_classes = getattr(ds, "num_classes", None)
    return InspectReport(
        target=f"{BUILTIN_PREFIX}{name}",
        kind="builtin",
        num_items=n,
        image_size=getattr(ds, "image_size", h if h == w else None),
        channels=getattr(ds, "channels", c),
        modes={f"tensor {c}x{h}x{w}": cnt for (c, h, w), cnt in shapes.items()},
        captions=_caption_summary(captions),
        labels=_label_summary(labels, getattr(ds, "class_names", None), num_classes) if labels else None,
        scanned=len(idx),
        source_info={
            "kind": "builtin",
            "name": name,
            "args": {"image_size": image_size, "split": split, "length": length, **options},
            "seed": seed,
        },
        dataset=ds,
    )


def inspect_dataset(
    target: str,
    *,
    grid_path: str | os.PathLike[str] | None = DEFAULT_GRID_PATH,
    max_grid_images: int = 64,
    image_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    split: str = "train",
    seed: int = 0,
    length: int | None = None,
    builtin_options: dict[str, Any] | None = None,
    scan_limit: int = 2000,
) -> InspectReport:
    """Inspect an image folder or a built-in dataset and optionally save a preview grid.

    Args:
        target: A folder path, or ``"builtin:NAME"`` for
            ``genimage.data.builtin.load_builtin(NAME, ...)``.
        grid_path: Where to save the preview grid PNG; ``None`` for no grid.
        max_grid_images: Most images in the grid (spread evenly over the dataset).
        image_size: Item size; default 64 for folders, the built-in's default otherwise.
        max_pixels: Pixel cap for folders (see :class:`ImageFolderDataset`).
        split: Built-ins only: which split.
        seed: Built-ins only: generation seed.
        length: Built-ins only: number of items (``None``: the built-in's default).
        builtin_options: Built-ins only: extra keyword arguments for ``load_builtin``.
        scan_limit: Built-ins only: most items generated to count labels and captions.

    Returns:
        An :class:`InspectReport`.

    Raises:
        GenimageError: Missing folder, no usable images, unknown built-in, bad options.
    """
    if max_grid_images < 1:
        raise GenimageError(f"max_grid_images must be at least 1, got {max_grid_images}")
    if target.startswith(BUILTIN_PREFIX):
        report = _inspect_builtin(
            target[len(BUILTIN_PREFIX):], image_size, split, seed, length,
            dict(builtin_options or {}), max(1, scan_limit),
        )
    else:
        if builtin_options:
            raise GenimageError("builtin options (--opt) apply only to builtin:NAME targets")
        report = _inspect_folder(target, image_size, max_pixels)
    if grid_path is not None:
        report.grid_path, report.grid_count = _write_grid(
            report.dataset, report.num_items, grid_path, max_grid_images
        )
    return report


def _fmt_stats(s: dict[str, float]) -> str:
    return f"{s['min']:g} / {s['median']:g} / {s['max']:g}"


def format_report(report: InspectReport, max_bad_files: int = 50) -> str:
    """Render an :class:`InspectReport` as the text ``genimage data inspect`` prints."""
    kind = "image folder" if report.kind == "image_folder" else "built-in dataset"
    lines = [f"dataset: {report.target} ({kind})"]
    counts = f"items: {report.num_items}"
    if report.kind == "image_folder":
        counts += f" usable, {len(report.bad_files)} bad, {report.ignored_files} other files ignored"
    lines.append(counts)
    size = f"{report.image_size}x{report.image_size}" if report.image_size else "varies"
    lines.append(f"output: {size}, {report.channels} channel(s)")
    if report.original_sizes:
        o = report.original_sizes
        lines.append(f"original width  min/median/max: {_fmt_stats(o['width'])}")
        lines.append(f"original height min/median/max: {_fmt_stats(o['height'])}")
        if report.upscaled:
            lines.append(f"upscaled: {report.upscaled} image(s) smaller than {report.image_size} px")
    if report.modes:
        lines.append("modes: " + ", ".join(f"{m} {n}" for m, n in report.modes.items()))
    if report.formats:
        lines.append("formats: " + ", ".join(f"{m} {n}" for m, n in report.formats.items()))
    if report.duplicates:
        lines.append(f"duplicates: {report.duplicates} file(s) identical to an earlier file")
    sampled = f" (in {report.scanned} sampled items)" if report.scanned < report.num_items else ""
    cap = report.captions
    if cap.get("count"):
        ex = "; ".join(repr(e if len(e) <= 60 else e[:57] + "...") for e in cap["examples"])
        lines.append(f"captions: {cap['count']} ({cap['unique']} unique){sampled}; e.g. {ex}")
    else:
        lines.append("captions: none")
    if report.labels:
        per = ", ".join(f"{k} {v}" for k, v in report.labels["counts"].items())
        lines.append(f"labels: {report.labels['num_classes']} classes{sampled}: {per}")
    else:
        lines.append("labels: none")
    if report.bad_files:
        lines.append(f"bad files ({len(report.bad_files)}):")
        for b in report.bad_files[:max_bad_files]:
            detail = f"  ({b.detail})" if b.detail else ""
            lines.append(f"  {b.path}: {b.reason}{detail}")
        if len(report.bad_files) > max_bad_files:
            lines.append(f"  ... and {len(report.bad_files) - max_bad_files} more")
    if report.grid_path is not None:
        lines.append(f"grid: {report.grid_path} ({report.grid_count} images)")
    return "\n".join(lines)
