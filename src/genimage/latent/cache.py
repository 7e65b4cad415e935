"""Encode a dataset through the autoencoder once; train on the cached latents afterwards.

Latent diffusion (Rombach et al. 2022) keeps the first stage frozen, so ``E(x)`` of every
training image is a constant of the run: computing it once and storing it removes the
encoder from every training step (the encoder costs more per image than a small latent
DiT step on CPU). An entry is keyed by

* the sha256 of the autoencoder's ``model.safetensors`` (another weight file, even with the
  same architecture, is another entry),
* the dataset's identity (:func:`dataset_identity`: its manifest, its defining attributes
  such as seed/split/length/image size, and a hash of a few probe items' pixels and captions),
* the encoding mode: the posterior mean (deterministic, the default) or one posterior draw
  per image from a seed,

and lives in ``CACHE_DIR/latents-<key[:24]>/``: ``latents.safetensors`` (``latents``
``(N, C, h, w)`` float32 and ``labels``), ``captions.json`` and ``meta.json``. An entry is
written in a hidden temporary folder and renamed into place, so a crash never leaves a
half-written entry under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genimage.errors import GenimageError
from genimage.latent.autoencoder import LoadedAutoencoder
from genimage.latent.dataset import LatentDataset
from genimage.latent.store import write_folder_atomically

CACHE_FORMAT = "genimage-latent-cache-1"
LATENTS_FILE = "latents.safetensors"
CAPTIONS_FILE = "captions.json"
META_FILE = "meta.json"
#: Dataset attributes that define which items a dataset yields (when it has them).
_IDENTITY_ATTRS = ("seed", "split", "length", "image_size", "channels", "supersample", "two_object_prob",
                   "held_out", "crop", "flip", "num_classes", "class_names", "has_captions")


def default_cache_dir() -> Path:
    """``$GENIMAGE_CACHE_DIR/latents``, else ``$XDG_CACHE_HOME/genimage/latents``, else
    ``~/.cache/genimage/latents``."""
    root = os.environ.get("GENIMAGE_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "latents"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "genimage" / "latents"


def _probe_indices(n: int, k: int = 8) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def dataset_identity(dataset: Any, probes: int = 8) -> dict[str, Any]:
    """What identifies a dataset's items, as a JSON-ready dict (cheap: reads ``probes`` items).

    * ``manifest_sha256``: sha256 of its manifest (:func:`genimage.data.manifest.build_manifest`;
      an image folder's lists every file's sha256), without the folder's location;
    * ``attrs``: the attributes that define procedural data (seed, split, length, size, ...);
    * ``probe_sha256``: sha256 of the pixels, labels and captions of ``probes`` items spread
      over the dataset, so a change in how items are made changes the identity too;
    * ``content_sha256``: for in-memory datasets (an ``images`` tensor, e.g.
      :class:`~genimage.data.tensor.TensorImageDataset`), the sha256 of every image, label
      and caption, which costs nothing there.
    """
    from genimage.data.manifest import build_manifest

    manifest = build_manifest(dataset)
    manifest.pop("root", None)
    attrs = {a: getattr(dataset, a) for a in _IDENTITY_ATTRS if hasattr(dataset, a)}
    attrs = json.loads(json.dumps(attrs, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else repr(o),
                                  sort_keys=True))
    n = len(dataset)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    h = hashlib.sha256()
    for i in _probe_indices(n, probes):
        item = dataset[i]
        h.update(f"{i}|{tuple(item['image'].shape)}|{item.get('label')}|{item.get('caption')}|".encode())
        h.update(np.ascontiguousarray(item["image"].float().numpy()).tobytes())
    identity = {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}", "num_items": n,
                "manifest_sha256": hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest(),
                "attrs": attrs, "probe_sha256": h.hexdigest()}
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        full = hashlib.sha256(np.ascontiguousarray(images.detach().float().cpu().numpy()).tobytes())
        full.update(json.dumps([getattr(dataset, "labels", None), getattr(dataset, "captions", None)],
                               default=repr).encode())
        identity["content_sha256"] = full.hexdigest()
    return identity


def cache_key(encoder_sha256: str, identity: dict[str, Any], sample_seed: int | None = None) -> str:
    """sha256 over the format, the encoder weights' sha256, the dataset identity and the mode."""
    mode = "mean" if sample_seed is None else f"sample:{int(sample_seed)}"
    blob = json.dumps({"format": CACHE_FORMAT, "encoder_sha256": encoder_sha256, "dataset": identity,
                       "mode": mode}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class LatentCacheEntry:
    """A loaded (or freshly written) cache entry.

    Attributes:
        folder: Its folder.
        key: Its key (:func:`cache_key`).
        latents: ``(N, C, h, w)`` float32 scaled latents.
        labels: ``(N,)`` int64 labels or ``None``.
        captions: ``N`` captions or ``None``.
        meta: Contents of ``meta.json``.
        hit: ``True`` if it was read from disk, ``False`` if encoded now.
        seconds: Time spent (reading, or encoding and writing).
    """

    folder: Path
    key: str
    latents: torch.Tensor
    labels: torch.Tensor | None
    captions: list[str] | None
    meta: dict[str, Any] = field(default_factory=dict)
    hit: bool = False
    seconds: float = 0.0

    def dataset(self, source: Any) -> LatentDataset:
        """A :class:`LatentDataset` over these latents with the classes of ``source``."""
        return LatentDataset(self.latents, self.labels, self.captions, num_classes=source.num_classes,
                             class_names=source.class_names, source_image_size=source.image_size,
                             source_channels=source.channels, cache_key=self.key)


@torch.no_grad()
def encode_dataset(ae: LoadedAutoencoder, dataset: Any, *, batch_size: int = 64, sample_seed: int | None = None,
                   progress: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, list[str] | None]:
    """Scaled latents of every item, in order, plus labels and captions.

    The posterior mean by default; with ``sample_seed``, item ``i`` gets one posterior draw
    from its own generator seeded ``(sample_seed, i)``.
    """
    if batch_size < 1:
        raise GenimageError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)  # random crops/flips are frozen at their epoch-0 draw
    model = ae.model
    device = next(model.parameters()).device
    has_labels = bool(getattr(dataset, "num_classes", None))
    has_captions = bool(getattr(dataset, "has_captions", False))
    chunks, labels, captions = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="encoding latents", unit="img", dynamic_ncols=True)
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        x = torch.stack([it["image"] for it in items]).to(device)
        if sample_seed is None:
            z = model.encode(x)
        else:
            gens = [torch.Generator().manual_seed(int(sample_seed) * 1_000_003 + i)
                    for i in range(start, start + len(items))]
            z = model.encode(x, generator=gens, sample=True)
        chunks.append(z.float().cpu())
        if has_labels:
            labels += [int(it["label"]) for it in items]
        if has_captions:
            captions += [str(it.get("caption", "")) for it in items]
        if bar is not None:
            bar.update(len(items))
    if bar is not None:
        bar.close()
    if not chunks:
        raise GenimageError("the dataset is empty; nothing to encode")
    return (torch.cat(chunks), torch.tensor(labels, dtype=torch.long) if has_labels else None,
            captions if has_captions else None)


def entry_folder(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"latents-{key[:24]}"


def _read_entry(folder: Path, key: str, n: int) -> LatentCacheEntry | None:
    """The complete entry in ``folder`` for ``key``, or ``None`` (missing, other key, damaged)."""
    from genimage.utils.weights import load_safetensors

    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key or meta.get("num_items") != n:
            return None
        tensors = load_safetensors(folder / LATENTS_FILE)
        captions = json.loads((folder / CAPTIONS_FILE).read_text()) if meta.get("captions") else None
    except (OSError, json.JSONDecodeError, GenimageError):
        return None
    latents = tensors.get("latents")
    if latents is None or latents.shape[0] != n or (captions is not None and len(captions) != n):
        return None
    return LatentCacheEntry(folder, key, latents, tensors.get("labels"), captions, meta, hit=True)


def _write_entry(folder: Path, key: str, latents: torch.Tensor, labels: torch.Tensor | None,
                 captions: list[str] | None, meta: dict[str, Any]) -> None:
    """Write an entry into a temporary sibling folder, then rename it to ``folder`` atomically."""
    from genimage.utils.weights import save_safetensors, write_json_atomic

    def write(tmp: Path) -> None:
        tensors = {"latents": latents.contiguous()}
        if labels is not None:
            tensors["labels"] = labels
        save_safetensors(tensors, tmp / LATENTS_FILE, metadata={"key": key, "format": CACHE_FORMAT})
        if captions is not None:
            write_json_atomic(captions, tmp / CAPTIONS_FILE)
        write_json_atomic(meta, tmp / META_FILE)

    write_folder_atomically(folder, write, what="latent cache entry")


def check_data_geometry(dataset: Any, ae: LoadedAutoencoder) -> None:
    """The data's images must be the size and channels the autoencoder encodes."""
    if (dataset.image_size, dataset.channels) != (ae.config.image_size, ae.config.channels):
        raise GenimageError(f"the autoencoder encodes {ae.config.image_size}px images with {ae.config.channels} "
                            f"channels, the data has {dataset.image_size}px with {dataset.channels}; "
                            f"pass --image-size {ae.config.image_size} or another autoencoder")


def load_or_build_latent_cache(dataset: Any, ae: LoadedAutoencoder, cache_dir: str | Path | None = None, *,
                               batch_size: int = 64, sample_seed: int | None = None,
                               progress: bool = False) -> LatentCacheEntry:
    """The cached latents of ``dataset`` under ``ae``: read from ``cache_dir`` when an entry with
    the same key exists, else encoded now and stored (see the module docstring).

    Args:
        dataset: Any genimage image dataset; its geometry must be the autoencoder's.
        ae: The autoencoder (:func:`genimage.latent.autoencoder.load_autoencoder`).
        cache_dir: Where entries live (default :func:`default_cache_dir`).
        batch_size: Images per encoder batch.
        sample_seed: ``None``: posterior means; else one seeded posterior draw per image.
        progress: Show a progress bar while encoding.
    """
    check_data_geometry(dataset, ae)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    t0 = time.perf_counter()
    identity = dataset_identity(dataset)
    key = cache_key(ae.sha256, identity, sample_seed)
    folder = entry_folder(cache_dir, key)
    found = _read_entry(folder, key, len(dataset))
    if found is not None:
        found.seconds = time.perf_counter() - t0
        return found
    latents, labels, captions = encode_dataset(ae, dataset, batch_size=batch_size, sample_seed=sample_seed,
                                               progress=progress)
    from genimage import __version__

    meta = {"format": CACHE_FORMAT, "key": key, "encoder_sha256": ae.sha256, "autoencoder": str(ae.folder),
            "dataset": identity, "mode": "mean" if sample_seed is None else f"sample:{sample_seed}",
            "num_items": int(latents.shape[0]), "latent_shape": list(latents.shape[1:]),
            "latent_mean": float(latents.mean()), "latent_std": float(latents.std()),
            "captions": captions is not None, "encode_seconds": round(time.perf_counter() - t0, 3),
            "genimage_version": __version__}
    _write_entry(folder, key, latents, labels, captions, meta)
    return LatentCacheEntry(folder, key, latents, labels, captions, meta, hit=False,
                            seconds=time.perf_counter() - t0)
