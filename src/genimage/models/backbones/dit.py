"""DiT: a diffusion transformer backbone with adaLN-Zero conditioning.

Implements the DiT block of Peebles & Xie (2023), "Scalable Diffusion Models with
Transformers", Sec. 3.2: patchify (a stride-``p`` ``p x p`` conv, computed as a linear
map of flattened patches), fixed 2D sin-cos position embedding, transformer blocks whose LayerNorms are modulated by a conditioning vector
``c`` (scale ``gamma``, shift ``beta``) and whose residual branches are scaled by a gate
``alpha``, all regressed from ``c`` by a zero-initialised linear layer ("adaLN-Zero"),
and a zero-initialised final layer so the network starts as the zero function.

``c`` = noise-level embedding + class embedding (+ pooled text). Text conditioning
follows the joint-attention idea of SD3's MMDiT (Esser et al. 2024, Sec. 3.1) with one
shared set of weights: projected text tokens are appended to the image tokens and the
whole sequence goes through every block; the text key mask keeps padding out. Text
tokens carry a learned position embedding (which also marks them as text), and the mean
of the projected real text tokens is added to ``c``.

fp32 outputs are batch invariant on CPU: sample i gives the same bits alone or in any
batch (see ``genimage.nn.embeddings.BatchInvariantLinear`` and ``genimage.nn.attention``).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.models.backbones.base import BACKBONES
from genimage.nn.attention import SelfAttention
from genimage.nn.embeddings import (
    NoiseLevelEmbedding,
    NullTextToken,
    make_batch_invariant,
    read_conditioning,
    sincos_2d_position_embedding,
)


@dataclasses.dataclass
class DiTConfig:
    """Configuration of :class:`DiT`.

    Args:
        image_size: Input height and width in pixels (square inputs only).
        in_channels: Input channels ``C``; the output has the same number.
        patch_size: Side ``p`` of a patch; ``image_size`` must be divisible by it.
            ``(image_size / p) ** 2`` image tokens. The default 4 gives 64 tokens at 32 px,
            ~3.8x cheaper than p=2 (see benchmarks/backbone_speed.py).
        hidden: Token width.
        depth: Number of transformer blocks.
        heads: Attention heads; must divide ``hidden``.
        mlp_ratio: MLP hidden width as a multiple of ``hidden``.
        num_classes: Number of classes for class conditioning; 0 disables it. Label -1
            selects a learned null class embedding.
        text_dim: Width of the per-token text states; 0 disables text conditioning.
        max_text_len: Longest text sequence accepted (size of the text position table).
        learn_sigma: Must stay False: the output always has ``in_channels`` channels
            (DiT's extra learned-variance channels are not supported).
    """

    image_size: int = 32
    in_channels: int = 3
    patch_size: int = 4
    hidden: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0
    text_dim: int = 0
    max_text_len: int = 32
    learn_sigma: bool = False

    def __post_init__(self) -> None:
        if self.learn_sigma:
            raise GenimageError("DiT learn_sigma=True is not supported; the output has in_channels channels")
        if self.image_size % self.patch_size:
            raise GenimageError(
                f"DiT image_size={self.image_size} is not divisible by patch_size={self.patch_size}"
            )
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise GenimageError(f"DiT hidden={self.hidden} must be divisible by heads={self.heads} (even head dim)")
        if self.hidden % 4:
            raise GenimageError(f"DiT hidden={self.hidden} must be divisible by 4 (2D sin-cos positions)")
        for name in ("depth", "heads", "in_channels", "max_text_len"):
            if getattr(self, name) < 1:
                raise GenimageError(f"DiT {name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 0 or self.text_dim < 0:
            raise GenimageError("DiT num_classes and text_dim must be >= 0 (0 disables that conditioning)")


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + gamma) + beta`` with per-sample ``(B, 1, D)`` scale and shift."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block (Peebles & Xie 2023, Fig. 3).

    Args:
        hidden: Token width.
        heads: Attention heads.
        mlp_ratio: MLP width multiple.
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.ada = nn.Linear(hidden, 6 * hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Args:
            x: Tokens ``(B, N, hidden)``.
            c: SiLU of the conditioning vector, ``(B, hidden)``.
            key_mask: Optional BoolTensor ``(B, N)``.
        """
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(_modulate(self.norm1(x), shift1, scale1), key_mask)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Diffusion transformer mapping ``(x, c_noise, cond) -> raw output`` (see ``base.Backbone``).

    Args:
        config: A :class:`DiTConfig`.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        d, p = cfg.hidden, cfg.patch_size
        self.grid = cfg.image_size // p
        # A stride-p p x p conv written as a linear map of flattened patches: the same
        # function, but oneDNN's conv changes its summation order at batch size 1.
        self.patch_embed = nn.Linear(cfg.in_channels * p * p, d)
        self.register_buffer(
            "pos_embed", sincos_2d_position_embedding(self.grid, self.grid, d)[None], persistent=False
        )
        self.noise_embed = NoiseLevelEmbedding(d)
        if cfg.num_classes:
            self.class_embed = nn.Embedding(cfg.num_classes + 1, d)  # last row: null class
        if cfg.text_dim:
            self.null_text = NullTextToken(cfg.text_dim)
            self.text_proj = nn.Linear(cfg.text_dim, d)
            self.text_pos = nn.Parameter(torch.zeros(cfg.max_text_len, d))  # also marks "text" type
            self.text_pool = nn.Linear(d, d)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(d, 2 * d)
        self.final_linear = nn.Linear(d, p * p * cfg.in_channels)
        self._init_weights()
        make_batch_invariant(self)  # per-sample (B, d) linears: same bits at any batch size

    def _init_weights(self) -> None:
        """DiT's initialisation: Xavier linears, N(0, 0.02) embeddings, zeroed adaLN and output."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in self.noise_embed.mlp:
            if isinstance(lin, nn.Linear):
                nn.init.normal_(lin.weight, std=0.02)
        if self.config.num_classes:
            nn.init.normal_(self.class_embed.weight, std=0.02)
        if self.config.text_dim:
            nn.init.normal_(self.text_pos, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada.weight)
            nn.init.zeros_(block.ada.bias)
        for lin in (self.final_ada, self.final_linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Args:
            x: Noisy input ``(B, C, H, W)`` with ``H = W = image_size``.
            c_noise: Noise-level conditioning ``(B,)``.
            cond: Optional dict with ``"label"`` and/or ``"text"``/``"text_mask"``.

        Returns:
            Raw output ``(B, C, H, W)`` in the dtype of ``x``.
        """
        cfg = self.config
        b = x.shape[0]
        if x.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise GenimageError(
                f"DiT expects input (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}"
            )
        if c_noise.shape != (b,):
            raise GenimageError(f"c_noise must have shape ({b},), got {tuple(c_noise.shape)}")
        idx, text, mask = read_conditioning(
            cond, b, num_classes=cfg.num_classes, text_dim=cfg.text_dim, max_text_len=cfg.max_text_len, device=x.device
        )
        tokens = self.patch_embed(self._patchify(x)) + self.pos_embed  # (B, N, d)
        n_img = tokens.shape[1]
        c = self.noise_embed(c_noise)
        if idx is not None:
            c = c + self.class_embed(idx)
        key_mask = None
        if text is not None:
            text, mask = self.null_text(text, mask)
            txt = self.text_proj(text)  # (B, L, d); masked rows are exactly the bias
            w = mask[..., None].to(txt.dtype)
            pooled = (txt * w).sum(1) / w.sum(1)
            c = c + self.text_pool(pooled)
            tokens = torch.cat([tokens, txt + self.text_pos[: txt.shape[1]]], dim=1)
            key_mask = torch.cat([mask.new_ones(b, n_img), mask], dim=1)
        c = nn.functional.silu(c)
        for block in self.blocks:
            tokens = block(tokens, c, key_mask)
        shift, scale = self.final_ada(c)[:, None].chunk(2, dim=-1)
        out = self.final_linear(_modulate(self.final_norm(tokens[:, :n_img]), shift, scale))
        return self._unpatchify(out).to(x.dtype)

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` image -> ``(B, N, C*p*p)`` row-major patches (conv weight layout)."""
        g, p, ch = self.grid, self.config.patch_size, self.config.in_channels
        x = x.reshape(x.shape[0], ch, g, p, g, p)
        return torch.einsum("bchpwq->bhwcpq", x).reshape(x.shape[0], g * g, ch * p * p)

    def _unpatchify(self, out: torch.Tensor) -> torch.Tensor:
        """``(B, N, p*p*C)`` tokens -> ``(B, C, H, W)`` image."""
        g, p, ch = self.grid, self.config.patch_size, self.config.in_channels
        out = out.reshape(out.shape[0], g, g, p, p, ch)
        return torch.einsum("bhwpqc->bchpwq", out).reshape(out.shape[0], ch, g * p, g * p)


BACKBONES.register("dit")((DiTConfig, DiT))
