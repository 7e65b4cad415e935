"""The bundled text encoder (all-MiniLM-L6-v2, a BERT) in plain PyTorch and ``tokenizers``.

Loading it through ``transformers`` costs 3-4 s of imports on a 2-core CPU before any
weight is read, most of a one-image ``genimage generate``. This module runs the same BERT
encoder (Devlin et al. 2019; Vaswani et al. 2017: post-norm transformer layers of
multi-head self-attention and a GELU feed-forward, over word + position + token-type
embeddings) with the same parameters and the same sequence of tensor operations as
transformers' ``BertModel`` with its SDPA attention (the key-padding mask as a boolean
``(B, 1, L, L)`` mask, none when no token is padding), so the hidden states agree bit for
bit (``tests/conditioning`` checks it against transformers); the tokenizer is the model's
own ``tokenizer.json`` run by the ``tokenizers`` library with transformers' padding and
truncation conventions.

Only what :class:`~genimage.conditioning.text.TextEncoder` uses is implemented: an encoder
(no decoder, no cache, no pooler), absolute positions, GELU.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from genimage.errors import GenimageError


class _Linear(nn.Linear):
    """``nn.Linear`` left uninitialised (``load_bert`` assigns every weight; a random init of
    the 10.6M linear weights took most of the load time)."""

    def reset_parameters(self) -> None:
        pass


class _Embeddings(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        d = cfg.hidden_size  # uninitialised tables (the weights are loaded next): no 11.7M random draws
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id,
                                            _weight=torch.empty(cfg.vocab_size, d))
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, d,
                                                _weight=torch.empty(cfg.max_position_embeddings, d))
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d, _weight=torch.empty(cfg.type_vocab_size, d))
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)[None]
        types = torch.zeros_like(ids)
        x = self.word_embeddings(ids) + self.token_type_embeddings(types)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class _Dense(nn.Module):
    """``dense -> dropout -> LayerNorm(. + residual)`` (BERT's post-norm sublayer output)."""

    def __init__(self, cin: int, cout: int, cfg) -> None:
        super().__init__()
        self.dense = _Linear(cin, cout)
        self.LayerNorm = nn.LayerNorm(cout, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.head_dim ** -0.5
        self.query = _Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = _Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = _Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, length = x.shape[:2]
        shape = (b, length, -1, self.head_dim)
        q = self.query(x).view(shape).transpose(1, 2)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.scaling,
                                             is_causal=False)
        out = out.reshape(out.shape[0], -1, length, v.shape[-1]).transpose(1, 2).contiguous()
        return out.reshape(b, length, -1).contiguous()


class _Attention(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = _Dense(cfg.hidden_size, cfg.hidden_size, cfg)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.dense = _Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x):
        return F.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _Dense(cfg.intermediate_size, cfg.hidden_size, cfg)

    def forward(self, x, mask):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT encoder with transformers' ``BertModel`` parameter names (no pooler).

    Args:
        config: Namespace with the fields of a BERT ``config.json`` (``vocab_size``,
            ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
            ``intermediate_size``, ``max_position_embeddings``, ``type_vocab_size``,
            ``layer_norm_eps``, ``hidden_dropout_prob``, ``pad_token_id``); kept as ``.config``.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> SimpleNamespace:
        """Args:
            input_ids: ``(B, L)`` token ids.
            attention_mask: ``(B, L)``, 1 / True on real tokens, 0 on padding.
            output_hidden_states: Also return every layer's states.

        Returns:
            Namespace with ``last_hidden_state`` ``(B, L, D)`` and ``hidden_states`` (the
            embedding output and each layer's, ``num_hidden_layers + 1`` tensors) or ``None``.
        """
        x = self.embeddings(input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            b, length = input_ids.shape  # keys masked, for every query: (B, 1, L, L)
            mask = attention_mask.bool()[:, None, None, :].expand(b, 1, length, length).contiguous()
        states = [x]
        for layer in self.encoder.layer:
            x = layer(x, mask)
            states.append(x)
        return SimpleNamespace(last_hidden_state=x, hidden_states=tuple(states) if output_hidden_states else None)


class FastTokenizer:
    """A ``tokenizer.json`` run by ``tokenizers``, called like a transformers tokenizer.

    Args:
        path: The ``tokenizer.json`` file.
        pad_token: Padding token (its id is looked up in the vocabulary).
    """

    def __init__(self, path: Path, pad_token: str) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._folder = Path(path).parent
        self.pad_token = pad_token
        self.pad_token_id = self._tok.token_to_id(pad_token)
        if self.pad_token_id is None:
            raise GenimageError(f"{path}: pad token {pad_token!r} is not in the vocabulary")
        self.padding_side = "right"

    def __len__(self) -> int:
        """Vocabulary size, added tokens included (as ``len()`` of a transformers tokenizer)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def save_pretrained(self, folder: str | Path) -> None:
        """Copy the tokenizer files into ``folder`` (loadable by transformers' ``AutoTokenizer``)."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if (self._folder / name).is_file():
                shutil.copyfile(self._folder / name, folder / name)

    def __call__(self, prompts: list[str], padding: str | bool = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None) -> dict:
        """Token ids and attention masks of ``prompts`` (special tokens added).

        Args:
            prompts: The texts (or one text: then flat lists).
            padding: ``"max_length"`` pads every row to ``max_length``; anything else: no padding.
            truncation: Cut rows to ``max_length`` tokens (special tokens included).
            max_length: Row length for padding / truncation.
            return_tensors: ``"pt"``: ``(B, L)`` long tensors; ``None``: lists.
        """
        tok = self._tok
        if truncation and max_length is not None:
            tok.enable_truncation(max_length, strategy="longest_first", direction="right")
        else:
            tok.no_truncation()
        if padding == "max_length" and max_length is not None:
            tok.enable_padding(direction=self.padding_side, pad_id=self.pad_token_id, pad_token=self.pad_token,
                               length=max_length)
        else:
            tok.no_padding()
        single = isinstance(prompts, str)  # one text: flat lists, as transformers returns
        enc = tok.encode_batch([prompts] if single else list(prompts))
        ids = [e.ids for e in enc]
        mask = [e.attention_mask for e in enc]
        if single and return_tensors != "pt":
            return {"input_ids": ids[0], "attention_mask": mask[0]}
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}
        return {"input_ids": ids, "attention_mask": mask}


def load_bert(model_dir: Path) -> tuple[BertEncoder, FastTokenizer]:
    """The BERT encoder and tokenizer of a transformers folder (``config.json``,
    ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``).

    Raises:
        GenimageError: A missing file, a config this module does not implement, or weights
            that do not match the config.
    """
    from genimage.utils.skip_init import skip_weight_init
    from genimage.utils.weights import load_safetensors

    model_dir = Path(model_dir)
    try:
        raw = json.loads((model_dir / "config.json").read_text())
        tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenimageError(f"cannot read the text encoder config in {model_dir}: {exc}") from None
    unsupported = [k for k, want in (("model_type", "bert"), ("hidden_act", "gelu"),
                                     ("position_embedding_type", "absolute")) if raw.get(k, want) != want]
    if unsupported or raw.get("is_decoder"):
        raise GenimageError(f"{model_dir}: not a plain BERT encoder ({unsupported or 'is_decoder'})")
    cfg = SimpleNamespace(**{"type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
                             "pad_token_id": 0, **raw})
    with skip_weight_init():  # every weight is loaded (strictly) below; (not the meta device: it imports torch._dynamo)
        model = BertEncoder(cfg)
    state = {k: v for k, v in load_safetensors(model_dir / "model.safetensors").items()
             if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    state = {k.removeprefix("bert."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise GenimageError(f"weights in {model_dir} do not match its config ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]!r})")
    tokenizer = FastTokenizer(model_dir / "tokenizer.json", tok_cfg.get("pad_token", "[PAD]"))
    return model.eval(), tokenizer
