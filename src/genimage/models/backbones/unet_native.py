"""The DDPM / latent-diffusion UNet in plain PyTorch, computing what diffusers' UNets compute.

genimage's :class:`~genimage.models.backbones.unet.UNet` used to build diffusers'
``UNet2DModel`` (no text) or ``UNet2DConditionModel`` (text); importing those takes 5-8 s on
a 2-core CPU (diffusers pulls in transformers, peft hooks and torch._dynamo), longer than a
whole one-image ``genimage generate``. This module builds the same network for the subset of
options a :class:`~genimage.models.backbones.unet.UNetConfig` can express, with the same
module names (so the same ``state_dict`` keys and safetensors files) and the same sequence
of tensor operations (so the same bits, fp32 or bf16 autocast; ``tests/models`` checks both
against diffusers).

Architecture: DDPM UNet (Ho et al. 2020, Appendix B): residual blocks with group norm and
an added time embedding, strided-conv downsampling, nearest-neighbour upsampling + conv, skip
concatenation; self-attention blocks (no text) or, with text, transformer blocks with
self-attention, cross-attention to the text tokens and a GEGLU feed-forward (Rombach et al.
2022, Sec. 3.3; Shazeer 2020 for GEGLU). The time embedding is the sinusoidal encoding
(Vaswani et al. 2017, Sec. 3.5) in (cos, sin) order followed by a two-layer SiLU MLP.

Fixed choices (those genimage's UNet passes to diffusers): group-norm eps 1e-5 in the
residual blocks and plain attention blocks, 1e-6 in the transformer blocks' input norm;
layer-norm eps 1e-5; conv-in/out kernels 3; downsample padding 1; no time-scale-shift norm;
no linear projections in the transformer blocks; one transformer layer per block.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features ``[cos(t w_j), sin(t w_j)]``, ``w_j = 10000^(-j / (dim/2))``.

    Args:
        t: ``(B,)`` noise-level inputs (any float dtype; computed in float32).
        dim: Even number of features.

    Returns:
        Float32 ``(B, dim)`` (the operation order of diffusers' ``get_timestep_embedding``
        with ``flip_sin_to_cos=True, downscale_freq_shift=0``, so the bits agree).
    """
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / half)
    args = t[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1)

def attention_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive cross-attention bias ``(B, 1, L)`` from a ``(B, L)`` keep-mask: keep -> 0,
    drop -> -10000 (diffusers' encoder_attention_mask convention); ``None`` for no mask."""
    if mask is None:
        return None
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def time_class_embedding(net: nn.Module, x: torch.Tensor, timestep: torch.Tensor,
                         class_labels: torch.Tensor | None) -> torch.Tensor:
    """The embedding ``(B, E)`` every resnet receives: the time embedding of ``timestep`` plus
    the class embedding of ``class_labels`` where ``net`` has one.

    ``net`` is a :class:`NativeUNet` or a module built from its encoder (the ControlNet of
    :mod:`genimage.models.control`): it needs ``text_dim``, ``feature_dim``, ``conv_in``,
    ``time_embedding`` and ``class_embedding``. ``x`` ``(B, C, H, W)`` gives the batch and dtype.
    """
    t = timestep.expand(x.shape[0]) if net.text_dim else timestep * torch.ones(
        x.shape[0], dtype=timestep.dtype, device=timestep.device)
    # UNet2DConditionModel casts the embeddings to the input's dtype, UNet2DModel to its own
    dtype = x.dtype if net.text_dim else net.conv_in.weight.dtype
    emb = net.time_embedding(timestep_features(t, net.feature_dim).to(dtype))
    if net.class_embedding is not None:
        emb = emb + net.class_embedding(class_labels).to(dtype)
    return emb


def run_encoder(net: nn.Module, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor | None,
                bias: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The down path of ``net`` (its ``down_blocks``) from ``h = conv_in(x)``: the deepest
    features and the skips, ``h`` first, one per resnet and downsampler."""
    skips = [h]
    for level in net.down_blocks:
        for j, resnet in enumerate(level.resnets):
            h = level._attend(j, resnet(h, emb), ctx, bias)
            skips.append(h)
        if level.downsamplers is not None:
            h = level.downsamplers[0](h)
            skips.append(h)
    return h, skips


def run_middle(net: nn.Module, h: torch.Tensor, emb: torch.Tensor, ctx: torch.Tensor | None,
               bias: torch.Tensor | None) -> torch.Tensor:
    """``net``'s middle block: resnet, attention, resnet."""
    mid = net.mid_block
    return mid.resnets[1](mid._attend(0, mid.resnets[0](h, emb), ctx, bias), emb)



class TimestepEmbedding(nn.Module):
    """``linear_1 -> SiLU -> linear_2``: features ``(B, in_dim)`` -> ``(B, dim)``."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """Pre-norm residual block with the time embedding added after the first conv.

    Args:
        cin: Input channels. cout: Output channels (a 1x1 ``conv_shortcut`` when different).
        temb: Time-embedding width. groups: Group-norm groups. dropout: Before ``conv2``.
    """

    def __init__(self, cin: int, cout: int, temb: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(cin, cout, 1, stride=1, padding=0) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Multi-head (cross-)attention with ``to_q/to_k/to_v/to_out``; ``F.scaled_dot_product_attention``.

    Args:
        dim: Query width. heads: Number of heads. head_dim: Channels per head.
        context_dim: Key/value input width (``None``: self-attention over the query input).
        bias: Bias of the q/k/v projections. groups: When set, a group norm over the
            channels of a ``(B, C, H, W)`` input and a residual connection (the DDPM
            attention block); otherwise the input is ``(B, N, dim)`` tokens.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, bias: bool = False,
                 groups: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, dim, eps=1e-5, affine=True) if groups else None
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=True), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: ``(B, C, H, W)`` (with ``groups``) or ``(B, N, dim)``.
            context: ``(B, L, context_dim)`` keys/values, or ``None`` for self-attention.
            bias: Additive attention bias ``(B, 1, L)`` (0 keep, -10000 drop), or ``None``.
        """
        residual = x
        spatial = x.ndim == 4
        if spatial:
            b, c, h, w = x.shape
            x = x.view(b, c, h * w).transpose(1, 2)
        b = x.shape[0] if context is None else context.shape[0]
        if bias is not None:  # (B, 1, L) -> one row per head, as (B, heads, 1, L)
            bias = bias.repeat_interleave(self.heads, dim=0, output_size=bias.shape[0] * self.heads)
            bias = bias.view(b, self.heads, -1, bias.shape[-1])
        if self.group_norm is not None:
            x = self.group_norm(x.transpose(1, 2)).transpose(1, 2)
        q = self.to_q(x)
        kv = x if context is None else context
        k, v = self.to_k(kv), self.to_v(kv)
        d = k.shape[-1] // self.heads
        q = q.view(b, -1, self.heads, d).transpose(1, 2)
        k = k.view(b, -1, self.heads, d).transpose(1, 2)
        v = v.view(b, -1, self.heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, -1, self.heads * d).to(q.dtype)
        out = self.to_out[1](self.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
            out = out + residual
        return out


class GEGLU(nn.Module):
    """``proj`` to twice the width, then ``value * GELU(gate)`` (Shazeer 2020)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward of 4x width: ``net = [GEGLU, Dropout, Linear]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.net:
            x = module(x)
        return x


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the text, GEGLU feed-forward; residual each."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=True)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=True)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=True)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context, bias) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Group norm, 1x1 ``proj_in``, one :class:`TransformerBlock` over the H*W tokens, 1x1 ``proj_out``, residual."""

    def __init__(self, channels: int, heads: int, context_dim: int, groups: int) -> None:
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, inner, 1, stride=1, padding=0)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, context_dim)])
        self.proj_out = nn.Conv2d(inner, channels, 1, stride=1, padding=0)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, _, h, w = x.shape
        residual = x
        x = self.proj_in(self.norm(x))
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner)
        for block in self.transformer_blocks:
            x = block(x, context, bias)
        x = x.reshape(b, h, w, inner).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(x) + residual


class _Conv(nn.Module):
    """Holds one conv named ``conv`` (the key diffusers' down/upsamplers use)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1)


class Downsample(_Conv):
    """3x3 conv of stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(_Conv):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] >= 64:
            x = x.contiguous()
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``resnets``, optional ``attentions`` and a down/upsampler."""

    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()

    def _attend(self, i: int, x, context, bias):
        if not len(self.attentions):
            return x
        att = self.attentions[i]
        return att(x, context, bias) if isinstance(att, SpatialTransformer) else att(x)


class NativeUNet(nn.Module):
    """The UNet of diffusers' ``UNet2DModel`` (``text_dim == 0``) or ``UNet2DConditionModel``.

    Args:
        in_channels: Input and output channels ``C``.
        block_out_channels: Channels per level, full resolution first.
        layers_per_block: Residual blocks per level down (one more up).
        attention_levels: Per level: attention there (self-attention blocks without text,
            transformer blocks with text).
        attention_head_dim: Without text: channels per head. With text: ignored (see ``heads``).
        heads: With text: heads per level (diffusers' ``attention_head_dim`` of
            ``UNet2DConditionModel``, which it reads as head counts).
        norm_num_groups: Group-norm groups.
        dropout: Dropout of the residual blocks.
        num_class_embeds: Rows of the class embedding (0: none).
        text_dim: Width of the text states to cross-attend to (0: no text).
    """

    def __init__(self, *, in_channels: int, block_out_channels: tuple[int, ...], layers_per_block: int,
                 attention_levels: tuple[bool, ...], attention_head_dim: int, heads: tuple[int, ...] | None,
                 norm_num_groups: int, dropout: float, num_class_embeds: int, text_dim: int) -> None:
        super().__init__()
        chans = list(block_out_channels)
        g = norm_num_groups
        temb = chans[0] * 4
        self.feature_dim = chans[0]
        self.text_dim = text_dim

        def attention(ch: int, level: int) -> nn.Module:
            if text_dim:
                return SpatialTransformer(ch, heads[level], text_dim, g)
            return Attention(ch, ch // attention_head_dim, attention_head_dim, bias=True, groups=g)

        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(chans[0], temb)
        self.class_embedding = nn.Embedding(num_class_embeds, temb) if num_class_embeds else None
        self.down_blocks = nn.ModuleList()
        cout = chans[0]
        for i, ch in enumerate(chans):
            cin, cout = cout, ch
            level = _Level()
            for j in range(layers_per_block):
                level.resnets.append(ResnetBlock(cin if j == 0 else cout, cout, temb, g, dropout))
                if attention_levels[i]:
                    level.attentions.append(attention(cout, i))
            level.downsamplers = nn.ModuleList([Downsample(cout)]) if i < len(chans) - 1 else None
            self.down_blocks.append(level)
        mid = _Level()
        mid.resnets.append(ResnetBlock(chans[-1], chans[-1], temb, g, dropout))
        mid.attentions.append(attention(chans[-1], len(chans) - 1))
        mid.resnets.append(ResnetBlock(chans[-1], chans[-1], temb, g, dropout))
        self.mid_block = mid
        self.up_blocks = nn.ModuleList()
        rev = chans[::-1]
        rev_att = tuple(attention_levels)[::-1]
        cout = rev[0]
        for i, ch in enumerate(rev):
            prev, cout = cout, ch
            cin = rev[min(i + 1, len(rev) - 1)]
            level = _Level()
            for j in range(layers_per_block + 1):
                skip = cin if j == layers_per_block else cout
                level.resnets.append(ResnetBlock((prev if j == 0 else cout) + skip, cout, temb, g, dropout))
                if rev_att[i]:
                    level.attentions.append(attention(cout, len(chans) - 1 - i))
            level.upsamplers = nn.ModuleList([Upsample(cout)]) if i < len(rev) - 1 else None
            self.up_blocks.append(level)
        self.conv_norm_out = nn.GroupNorm(g, chans[0], eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(chans[0], in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, return_dict: bool = False,
                down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None):
        """Args:
            x: ``(B, C, H, W)``, H and W divisible by ``2 ** (levels - 1)``.
            timestep: ``(B,)`` noise-level input.
            class_labels: ``(B,)`` rows of the class embedding, when it has one.
            encoder_hidden_states: ``(B, L, text_dim)`` text states, with text.
            encoder_attention_mask: ``(B, L)``, True / 1 on real tokens.
            return_dict: Unused; kept for call compatibility (a 1-tuple is returned).
            down_block_additional_residuals: ControlNet residuals added to the skip connections,
                one per skip in order (``genimage.models.control``; diffusers' name), or ``None``.
            mid_block_additional_residual: ControlNet residual added after the middle block, or ``None``.

        Returns:
            ``(out,)`` with ``out`` of shape ``(B, C, H, W)``.
        """
        bias = attention_bias(encoder_attention_mask, x.dtype)
        emb = time_class_embedding(self, x, timestep, class_labels)
        ctx = encoder_hidden_states
        h, skips = run_encoder(self, self.conv_in(x), emb, ctx, bias)
        if down_block_additional_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals, strict=True)]
        h = run_middle(self, h, emb, ctx, bias)
        if mid_block_additional_residual is not None:
            h = h + mid_block_additional_residual
        for level in self.up_blocks:
            for j, resnet in enumerate(level.resnets):
                h = level._attend(j, resnet(torch.cat([h, skips.pop()], dim=1), emb), ctx, bias)
            if level.upsamplers is not None:
                h = level.upsamplers[0](h)
        return (self.conv_out(self.conv_act(self.conv_norm_out(h))),)
