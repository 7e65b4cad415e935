"""Cache the frozen text encoder's output for a dataset's captions on disk.

A text-to-image model cross-attends to the per-token states of a frozen text encoder
(Saharia et al. 2022; Rombach et al. 2022, Sec. 3.3), so, like the image latents, the
states of the training captions are constants of the run. The distinct captions are
encoded once (:meth:`~genimage.conditioning.text.TextEncoder.encode_unique`) and stored in
``CACHE_DIR/text-<key[:24]>/``, keyed by the encoder's weights sha256, its token length and
pooling, and the sha256 of the distinct captions. Only the states at real tokens are stored
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


class CachedTextEncoder:
    """Stands in for a :class:`~genimage.conditioning.text.TextEncoder` on a fixed set of prompts.

    :meth:`encode` answers from the table; a prompt that is not in it is passed to
    ``fallback`` (the live encoder) when one is given, else it is an error.

    Args:
        prompts: The ``U`` distinct prompts of the table.
        text_packed: ``(T, D)`` states at the True entries of ``text_mask``, row-major.
        text_mask: ``(U, L)`` bool.
        pooled: ``(U, D)`` pooled embeddings.
        name, weights_sha256: Of the encoder that made the table.
        fallback: Optional live encoder for other prompts.
    """

    def __init__(self, prompts: Sequence[str], text_packed: torch.Tensor, text_mask: torch.Tensor,
                 pooled: torch.Tensor, *, name: str, weights_sha256: str, fallback: Any = None) -> None:
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
        self.max_length = int(text_mask.shape[1])
        self.dim = int(pooled.shape[1])

    def __len__(self) -> int:
        return len(self.prompts)

    def _row(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        text = torch.zeros(self.max_length, self.dim, dtype=self.text_packed.dtype)
        text[self.text_mask[i]] = self.text_packed[self.offsets[i]:self.offsets[i + 1]]
        return text, self.text_mask[i], self.pooled[i]

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Same output as :meth:`TextEncoder.encode` (``text``, ``text_mask``, ``text_pooled``)."""
        if isinstance(prompts, str):
            raise GenimageError("encode() takes a list of prompts, got one string; wrap it: [prompt]")
        prompts = list(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in self.index and p.strip()]
        extra: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if missing:
            if self.fallback is None:
                raise GenimageError(f"prompt {missing[0]!r} is not in the text cache and no text encoder is loaded")
            enc = self.fallback.encode(missing)
            extra = {p: (enc["text"][j].cpu(), enc["text_mask"][j].cpu(), enc["text_pooled"][j].cpu())
                     for j, p in enumerate(missing)}
        rows = []
        for p in prompts:
            if p in self.index:
                rows.append(self._row(self.index[p]))
            elif p in extra:
                rows.append(extra[p])
            else:  # the empty prompt: the unconditional input (zeros, no tokens)
                rows.append((torch.zeros(self.max_length, self.dim), torch.zeros(self.max_length, dtype=torch.bool),
                             torch.zeros(self.dim)))
        if not rows:
            return {"text": torch.zeros(0, self.max_length, self.dim),
                    "text_mask": torch.zeros(0, self.max_length, dtype=torch.bool),
                    "text_pooled": torch.zeros(0, self.dim)}
        return {"text": torch.stack([r[0] for r in rows]), "text_mask": torch.stack([r[1] for r in rows]),
                "text_pooled": torch.stack([r[2] for r in rows])}

    __call__ = encode


def text_cache_key(weights_sha256: str, max_length: int, normalize: bool, prompts: Sequence[str]) -> str:
    """sha256 over the format, the encoder's weights sha256, token length, pooling and prompts."""
    prompts_sha = hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
    blob = json.dumps({"format": TEXT_CACHE_FORMAT, "encoder_sha256": weights_sha256, "max_length": int(max_length),
                       "normalize": bool(normalize), "prompts_sha256": prompts_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_or_build_text_cache(captions: Sequence[str], encoder: Any, cache_dir: str | Path, *,
                             progress: bool = False) -> tuple[CachedTextEncoder, bool]:
    """The cached states of the distinct non-empty ``captions`` under ``encoder`` (a
    :class:`TextEncoder`), read from ``cache_dir`` or encoded now and stored atomically.

    Returns:
        ``(table, hit)``; the table falls back to ``encoder`` for other prompts.
    """
    from genimage.latent.store import write_folder_atomically
    from genimage.utils.weights import load_safetensors, save_safetensors, write_json_atomic

    prompts = sorted({c for c in captions if c.strip()})
    key = text_cache_key(encoder.weights_sha256, encoder.max_length, getattr(encoder, "normalize", False), prompts)
    folder = Path(cache_dir) / f"text-{key[:24]}"
    args = dict(name=encoder.name, weights_sha256=encoder.weights_sha256, fallback=encoder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("key") == key and json.loads((folder / PROMPTS_FILE).read_text()) == prompts:
            t = load_safetensors(folder / TEXT_FILE)
            return CachedTextEncoder(prompts, t["text"], t["text_mask"], t["text_pooled"], **args), True
    except (OSError, json.JSONDecodeError, KeyError, GenimageError):
        pass
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
                           "num_prompts": len(prompts), "encode_seconds": round(time.perf_counter() - t0, 3)},
                          tmp / META_FILE)

    write_folder_atomically(folder, write)
    return CachedTextEncoder(prompts, packed, mask, pooled, **args), False
