"""Embeddings shared by the backbones: noise level (sinusoidal + MLP) and 2D positions.

The noise-level embedding is the Transformer positional encoding (Vaswani et al. 2017,
"Attention Is All You Need", Sec. 3.5) applied to a real number, followed by a two-layer
MLP, as in DDPM (Ho et al. 2020) and DiT (Peebles & Xie 2023, Sec. 3.2 "timestep
embedding"). The 2D position embedding is the fixed sin-cos table of MAE (He et al. 2022)
used by DiT.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genimage.errors import GenimageError


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of real numbers.

    Feature ``j < dim/2`` is ``cos(x * w_j)`` and ``j >= dim/2`` is ``sin(x * w_j)`` with
    ``w_j = max_period ** (-j / (dim/2))``, i.e. periods from ``2*pi`` to ``2*pi*max_period``.
    Suited to ``x`` spanning roughly ``[-max_period/10, max_period/10]`` (e.g. DDPM
    timesteps in ``[0, 1000]``); finer-scaled inputs such as EDM's ``ln(sigma)/4`` still
    get distinct features from the fast frequencies.

    Args:
        x: Real numbers, shape ``(B,)``, any float dtype (computed in float32).
        dim: Number of features; must be even.
        max_period: Longest period divided by ``2*pi``.

    Returns:
        Float32 tensor ``(B, dim)``.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding needs an even dim, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class BatchInvariantLinear(nn.Linear):
    """``nn.Linear`` whose result for a row does not depend on how many rows come with it.

    On the x86 CPUs genimage targets, MKL's sgemm picks a different kernel (with a
    different summation order) for fewer than ~12 rows, so ``linear(x)[i]`` changed in the
    last bit with the batch size, breaking "image i depends only on seed i". Inputs with
    fewer than :attr:`min_rows` rows are zero-padded to that many rows; larger inputs
    run unchanged. The padding costs at most a 16-row matmul.
    """

    min_rows = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if rows >= self.min_rows:
            return super().forward(x)
        flat = x.reshape(rows, x.shape[-1])
        flat = torch.cat([flat, flat.new_zeros(self.min_rows - rows, x.shape[-1])])
        return super().forward(flat)[:rows].reshape(*x.shape[:-1], self.out_features)


def make_batch_invariant(module: nn.Module) -> nn.Module:
    """Turn every plain ``nn.Linear`` inside ``module`` into a :class:`BatchInvariantLinear`, in place.

    Parameters and state-dict keys are unchanged. Returns ``module``.
    """
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = BatchInvariantLinear
    return module


class NoiseLevelEmbedding(nn.Module):
    """Noise level ``c_noise (B,)`` -> vector ``(B, dim)``: sinusoidal features then an MLP.

    Args:
        dim: Output width.
        freq_dim: Number of sinusoidal features fed to the MLP (DiT uses 256).
        max_period: See :func:`sinusoidal_embedding`.
    """

    def __init__(self, dim: int, freq_dim: int = 256, max_period: float = 10000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Args:
            c_noise: Noise-level conditioning ``(B,)``.

        Returns:
            Embedding ``(B, dim)``.
        """
        return self.mlp(sinusoidal_embedding(c_noise, self.freq_dim, self.max_period))


def sincos_2d_position_embedding(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position table (MAE / DiT): half the features encode the row, half the column.

    Args:
        height: Number of token rows.
        width: Number of token columns.
        dim: Feature width; must be divisible by 4.

    Returns:
        Float32 tensor ``(height * width, dim)`` in row-major token order.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d_position_embedding needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    emb_rows = sinusoidal_embedding(rows.reshape(-1), dim // 2)
    emb_cols = sinusoidal_embedding(cols.reshape(-1), dim // 2)
    return torch.cat([emb_rows, emb_cols], dim=-1)


# --- conditioning inputs shared by the backbones (see genimage.models.backbones.base) ---


def class_index(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Map labels ``(B,)`` in ``[0, num_classes)`` or ``-1`` (no label) to embedding rows.

    ``-1`` becomes ``num_classes``, the row of the learned null class embedding used for
    classifier-free guidance (Ho & Salimans 2022).

    Args:
        label: Integer tensor ``(B,)``.
        num_classes: Number of real classes.

    Returns:
        LongTensor ``(B,)`` in ``[0, num_classes]``.
    """
    if label.dtype.is_floating_point or label.dim() != 1:
        raise GenimageError(f"cond['label'] must be an integer tensor (B,), got {label.dtype} {tuple(label.shape)}")
    if label.numel() and (int(label.min()) < -1 or int(label.max()) >= num_classes):
        raise GenimageError(
            f"cond['label'] must be in [0, {num_classes}) or -1 for no label, "
            f"got values in [{int(label.min())}, {int(label.max())}]"
        )
    return torch.where(label < 0, num_classes, label).long()


class NullTextToken(nn.Module):
    """A learned null text token substituted into unconditional rows of a text batch.

    Rows whose mask is all False (unconditional, e.g. caption dropped for classifier-free
    guidance) get the learned token at position 0 with its mask set True, so attention
    never sees an all-masked row. Masked positions of every row are zeroed, so whatever
    a caller leaves there (padding garbage) cannot leak into the result.

    Args:
        text_dim: Width ``D_text`` of the text states.
    """

    def __init__(self, text_dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(text_dim) * 0.02)

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            text: Text states ``(B, L, D_text)`` with ``L >= 1``.
            mask: BoolTensor ``(B, L)``, True on real tokens.

        Returns:
            ``(text, mask)`` with the same shapes; every mask row has at least one True.
        """
        null_row = ~mask.any(dim=1, keepdim=True)  # (B, 1)
        first = torch.zeros_like(mask)
        first[:, 0] = True
        use_null = null_row & first  # (B, L)
        text = torch.where(mask[..., None], text, torch.zeros((), dtype=text.dtype))
        text = torch.where(use_null[..., None], self.token.to(text.dtype), text)
        return text, mask | use_null


def read_conditioning(
    cond: dict[str, torch.Tensor] | None,
    batch: int,
    *,
    num_classes: int,
    text_dim: int,
    max_text_len: int,
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Validate a backbone's ``cond`` dict and fill in what is missing as "unconditional".

    Args:
        cond: ``None`` or a dict with optional ``"label"`` ``(B,)`` and ``"text"``
            ``(B, L, D_text)`` / ``"text_mask"`` ``(B, L)`` (mask defaults to all True).
        batch: Batch size ``B`` of the image input.
        num_classes: The backbone's class count (0: labels are rejected).
        text_dim: The backbone's text width (0: text is rejected).
        max_text_len: Longest accepted text sequence ``L``.
        device: Device for tensors created here.

    Returns:
        ``(class_idx, text, text_mask)``: class_idx ``(B,)`` from :func:`class_index`
        (None if ``num_classes == 0``); text ``(B, L, D_text)`` and a bool mask ``(B, L)``
        (both None if ``text_dim == 0``; missing text becomes one all-False column).
    """
    cond = cond or {}
    unknown = set(cond) - {"label", "text", "text_mask"}
    if unknown:
        raise GenimageError(f"unknown conditioning keys {sorted(unknown)}; use 'label', 'text', 'text_mask'")
    idx = text = mask = None
    if "label" in cond:
        if num_classes == 0:
            raise GenimageError("cond has 'label' but the backbone has num_classes=0; set num_classes > 0")
        if cond["label"].shape != (batch,):
            raise GenimageError(f"cond['label'] must have shape ({batch},), got {tuple(cond['label'].shape)}")
    if num_classes:
        label = cond.get("label")
        if label is None:
            label = torch.full((batch,), -1, dtype=torch.long, device=device)
        idx = class_index(label, num_classes)
    if "text" in cond or "text_mask" in cond:
        if text_dim == 0:
            raise GenimageError("cond has 'text' but the backbone has text_dim=0; set text_dim to the encoder width")
        if "text" not in cond:
            raise GenimageError("cond has 'text_mask' without 'text'; pass both")
    if text_dim:
        text = cond.get("text")
        if text is None:
            text = torch.zeros(batch, 1, text_dim, device=device)
            mask = torch.zeros(batch, 1, dtype=torch.bool, device=device)
        else:
            if text.dim() != 3 or text.shape[0] != batch or text.shape[2] != text_dim or text.shape[1] < 1:
                raise GenimageError(
                    f"cond['text'] must have shape ({batch}, L, {text_dim}) with L >= 1, got {tuple(text.shape)}"
                )
            if text.shape[1] > max_text_len:
                raise GenimageError(
                    f"text has {text.shape[1]} tokens but the backbone takes at most max_text_len={max_text_len}; "
                    "truncate the prompt tokens or raise max_text_len"
                )
            mask = cond.get("text_mask")
            if mask is None:
                mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
            elif mask.shape != text.shape[:2] or mask.dtype != torch.bool:
                raise GenimageError(
                    f"cond['text_mask'] must be a bool tensor of shape {tuple(text.shape[:2])}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
    return idx, text, mask
