"""Cache the frozen text encoder's output for a dataset's captions on disk.

A text-to-image model cross-attends to the per-token states of a frozen text encoder
(Saharia et al. 2022; Rombach et al. 2022, Sec. 3.3), so, like the image latents, the
states of the training captions are constants of the run. The distinct captions are
encoded once (:meth:`~genimage.conditioning.text.TextEncoder.encode_unique`) and stored in
``CACHE_DIR/text-<key[:24]>/``, keyed by the encoder's weights sha256, its token length,
pooling and hidden layers, and the sha256 of the distinct captions. Only the states at real tokens are stored
(``text`` packed ``(T, D)`` over the True entries of ``text_mask`` ``(U, L)``), since
:class:`TextEncoder` zeroes the padding; rows are rebuilt exactly on lookup.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from genimage.errors import GenimageError

TEXT_CACHE_FORMAT = "genimage-text-cache-1"
TEXT_FILE = "text.safetensors"
PROMPTS_FILE = "prompts.json"
META_FILE = "meta.json"
#: Largest table kept as a dense ``(U, L, D)`` tensor (the 915 shapes captions at L=16,
#: D=768 take 45 MB).
DENSE_LIMIT_BYTES = 512 * 2**20


class CachedTextEncoder:
    """Stands in for a :class:`~genimage.conditioning.text.TextEncoder` on a fixed set of prompts.

    :meth:`encode` answers from the table; a prompt that is not in it is passed to
    ``fallback`` (the live encoder) when one is given, else it is an error. Tables up to
    :data:`DENSE_LIMIT_BYTES` are unpacked once into a dense ``(U, L, D)`` tensor so a batch
    is one gather (the training loop asks for every batch).

    Args:
        prompts: The ``U`` distinct prompts of the table.
        text_packed: ``(T, D)`` states at the True entries of ``text_mask``, row-major.
        text_mask: ``(U, L)`` bool.
        pooled: ``(U, D)`` pooled embeddings.
        name, weights_sha256: Of the encoder that made the table.
        fallback: Optional live encoder for other prompts.
        normalize, layers: The encoder's pooling normalisation and hidden layers (part of the
            cache key; see :func:`text_cache_key`).
    """

    def __init__(self, prompts: Sequence[str], text_packed: torch.Tensor, text_mask: torch.Tensor,
                 pooled: torch.Tensor, *, name: str, weights_sha256: str, fallback: Any = None,
                 normalize: bool = False, layers: Sequence[int] | None = None) -> None:
        self.prompts = list(prompts)
        self.index = {p: i for i, p in enumerate(self.prompts)}
        self.text_mask = text_mask.bool()
        counts = self.text_mask.sum(1)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).tolist()
        if text_packed.shape[0] != self.offsets[-1]:
            raise GenimageError("damaged text cache: packed states do not match the mask")
        self.text_packed = text_packed
        self.pooled = pooled
        self.name = name
        self.weights_sha256 = weights_sha256
        self.fallback = fallback
        self.normalize = bool(normalize)
        self.layers = tuple(int(i) for i in layers) if layers else None
        self.max_length = int(text_mask.shape[1])
        self.dim = int(pooled.shape[1])
        self._dense: torch.Tensor | None = None
        if len(self.prompts) * self.max_length * self.dim * text_packed.element_size() <= DENSE_LIMIT_BYTES:
            self._dense = text_packed.new_zeros(len(self.prompts), self.max_length, self.dim)
            self._dense[self.text_mask] = text_packed

    def __len__(self) -> int:
        return len(self.prompts)

    def _row(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._dense is not None:
            return self._dense[i], self.text_mask[i], self.pooled[i]
        text = torch.zeros(self.max_length, self.dim, dtype=self.text_packed.dtype)
        text[self.text_mask[i]] = self.text_packed[self.offsets[i]:self.offsets[i + 1]]
        return text, self.text_mask[i], self.pooled[i]

    def _empty(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` rows of the unconditional input (zeros, no tokens)."""
        return {"text": torch.zeros(n, self.max_length, self.dim),
                "text_mask": torch.zeros(n, self.max_length, dtype=torch.bool),
                "text_pooled": torch.zeros(n, self.dim)}

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Same output as :meth:`TextEncoder.encode` (``text``, ``text_mask``, ``text_pooled``)."""
        if isinstance(prompts, str):
            raise GenimageError("encode() takes a list of prompts, got one string; wrap it: [prompt]")
        prompts = list(prompts)
        if not prompts:
            return self._empty(0)
        rows = [self.index.get(p, -1) for p in prompts]
        if self._dense is not None and min(rows) >= 0:  # every prompt in the table: one gather
            idx = torch.tensor(rows, dtype=torch.long)
            return {"text": self._dense[idx], "text_mask": self.text_mask[idx], "text_pooled": self.pooled[idx]}
        missing = [p for p in dict.fromkeys(prompts) if p not in self.index and p.strip()]
        extra: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if missing:
            if self.fallback is None:
                raise GenimageError(f"prompt {missing[0]!r} is not in the text cache and no text encoder is loaded")
            enc = self.fallback.encode(missing)
            extra = {p: (enc["text"][j].cpu(), enc["text_mask"][j].cpu(), enc["text_pooled"][j].cpu())
                     for j, p in enumerate(missing)}
        empty = self._empty(1)
        out = []
        for p, i in zip(prompts, rows):
            if i >= 0:
                out.append(self._row(i))
            elif p in extra:
                out.append(extra[p])
            else:  # the empty prompt: the unconditional input
                out.append((empty["text"][0], empty["text_mask"][0], empty["text_pooled"][0]))
        return {"text": torch.stack([r[0] for r in out]), "text_mask": torch.stack([r[1] for r in out]),
                "text_pooled": torch.stack([r[2] for r in out])}

    __call__ = encode


def text_cache_key(weights_sha256: str, max_length: int, normalize: bool, prompts: Sequence[str],
                   layers: Sequence[int] | None = None) -> str:
    """sha256 over the format, the encoder's weights sha256, token length, pooling, hidden
    layers (absent from the hash for the default last layer, so older keys stay valid) and prompts."""
    prompts_sha = hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
    fields = {"format": TEXT_CACHE_FORMAT, "encoder_sha256": weights_sha256, "max_length": int(max_length),
              "normalize": bool(normalize), "prompts_sha256": prompts_sha}
    if layers:
        fields["layers"] = [int(i) for i in layers]
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_or_build_text_cache(captions: Sequence[str], encoder: Any, cache_dir: str | Path, *,
                             progress: bool = False) -> tuple[CachedTextEncoder, bool]:
    """The cached states of the distinct non-empty ``captions`` under ``encoder`` (a
    :class:`TextEncoder`), read from ``cache_dir`` or encoded now and stored atomically.

    Returns:
        ``(table, hit)``; the table falls back to ``encoder`` for other prompts.
    """
    from genimage.latent.store import write_folder_atomically
    from genimage.utils.weights import save_safetensors, write_json_atomic

    prompts = sorted({c for c in captions if c.strip()})
    layers = getattr(encoder, "layers", None)
    normalize = bool(getattr(encoder, "normalize", False))
    key = text_cache_key(encoder.weights_sha256, encoder.max_length, normalize, prompts, layers)
    folder = Path(cache_dir) / f"text-{key[:24]}"
    args = dict(name=encoder.name, weights_sha256=encoder.weights_sha256, fallback=encoder, normalize=normalize,
                layers=layers)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("key") == key and json.loads((folder / PROMPTS_FILE).read_text()) == prompts:
            return _table(folder, prompts, **args), True
    except (OSError, json.JSONDecodeError, KeyError, GenimageError):
        pass
    if not hasattr(encoder, "encode_unique"):  # a cached table standing in for the encoder
        raise GenimageError(f"no text cache entry {folder.name} for these captions, and {encoder.name!r} is a cached "
                            "table, not a live encoder; build the cache where the encoder is installed")
    t0 = time.perf_counter()
    enc = encoder.encode_unique(prompts, progress=progress).embeddings if prompts else encoder.encode([])
    mask = enc["text_mask"].bool().cpu()
    packed = enc["text"].float().cpu()[mask]
    pooled = enc["text_pooled"].float().cpu()

    def write(tmp: Path) -> None:
        save_safetensors({"text": packed, "text_mask": mask, "text_pooled": pooled}, tmp / TEXT_FILE,
                         metadata={"key": key, "format": TEXT_CACHE_FORMAT})
        write_json_atomic(prompts, tmp / PROMPTS_FILE)
        write_json_atomic({"format": TEXT_CACHE_FORMAT, "key": key, "encoder": encoder.name,
                           "encoder_sha256": encoder.weights_sha256, "max_length": encoder.max_length,
                           "layers": list(layers) if layers else None, "normalize": normalize,
                           "num_prompts": len(prompts), "encode_seconds": round(time.perf_counter() - t0, 3)},
                          tmp / META_FILE)

    write_folder_atomically(folder, write, what="caption cache entry")
    return CachedTextEncoder(prompts, packed, mask, pooled, **args), False


def read_text_cache(folder: str | Path) -> CachedTextEncoder:
    """The table stored in one cache entry ``folder`` (``text-<key>``), with no live encoder.

    For machines where the text encoder's package is missing but its states for the training
    captions were cached elsewhere (``scripts/train_with_cached_text.py``). States stored in
    half precision (to carry a smaller copy) are returned as float32.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        prompts = json.loads((folder / PROMPTS_FILE).read_text())
        if meta.get("format") != TEXT_CACHE_FORMAT or "normalize" not in meta:
            raise GenimageError(f"{folder} was written by another genimage version; rebuild it")
        return _table(folder, prompts, name=meta["encoder"], weights_sha256=meta["encoder_sha256"],
                      normalize=meta["normalize"], layers=meta.get("layers"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GenimageError(f"{folder} is not a complete text cache entry ({exc}); build it with genimage train") from None


def _table(folder: Path, prompts: list[str], **kwargs: Any) -> CachedTextEncoder:
    """The :class:`CachedTextEncoder` of the states in ``folder``, as float32 whatever was stored
    (a copy carried to another machine may be half precision)."""
    from genimage.utils.weights import load_safetensors

    t = load_safetensors(folder / TEXT_FILE)
    return CachedTextEncoder(prompts, t["text"].float(), t["text_mask"], t["text_pooled"].float(), **kwargs)
