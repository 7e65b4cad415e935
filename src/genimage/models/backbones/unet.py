"""UNet backbone: a thin wrapper around diffusers' ``UNet2DModel`` / ``UNet2DConditionModel``.

The architecture is the DDPM UNet (Ho et al. 2020, Appendix B; Ronneberger et al. 2015)
with residual blocks, group norm and self-attention at the lowest resolution; with text,
the attention blocks become transformer blocks that cross-attend to the text tokens
(Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models",
Sec. 3.3). The backbone's ``c_noise`` is fed as diffusers' ``timestep``, the label as its
``class_labels`` (one extra embedding row is the null class), the text as
``encoder_hidden_states`` with ``encoder_attention_mask``.

By default the network is genimage's own copy of diffusers' (``unet_native``: same
parameters, state-dict keys and bits), so building a UNet does not import diffusers (5-8 s
on the target CPU); ``UNet(config, impl="diffusers")`` builds diffusers' classes.

fp32 outputs are batch invariant on one machine and thread count: every ``nn.Linear`` of
the diffusers model becomes a ``BatchInvariantLinear`` and a batch of one is run as a batch
of two (oneDNN convolutions sum in another order for a single image; this costs ~1.7x at
batch 1 only). Results may differ in the last bits between thread counts.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.models.backbones.base import BACKBONES
from genimage.nn.embeddings import NullTextToken, make_batch_invariant, read_conditioning


@dataclasses.dataclass
class UNetConfig:
    """Configuration of :class:`UNet`.

    Args:
        image_size: Nominal input height/width (stored as diffusers' ``sample_size``); any
            size divisible by ``2 ** (len(block_out_channels) - 1)`` is accepted.
        in_channels: Input channels ``C``; the output has the same number.
        block_out_channels: Channels per resolution level, from full resolution down;
            every level but the last halves the resolution.
        layers_per_block: Residual blocks per level on the way down (one more on the way up).
        attention_levels: One flag per level: True puts (self- or cross-) attention there.
            ``None`` (default) means attention at the lowest resolution only. The middle
            block always has attention.
        attention_head_dim: Channels per attention head; must divide every attended level's
            channels.
        norm_num_groups: Group-norm groups; must divide every entry of ``block_out_channels``.
        dropout: Dropout in the residual blocks.
        num_classes: Number of classes; 0 disables class conditioning. Label -1 selects
            the learned null class embedding (row ``num_classes``).
        text_dim: Width of the per-token text states (diffusers' ``cross_attention_dim``);
            0 disables text conditioning and uses ``UNet2DModel``.
        max_text_len: Longest text sequence accepted.
        coord_channels: Append two fixed coordinate channels (x and y from -1 to 1 across the
            input) to the input before the first convolution: CoordConv (Liu et al. 2018, "An
            intriguing failing of convolutional neural networks and the CoordConv solution",
            Sec. 3), so the network knows where it is without inferring it from the zero
            padding; for prompts that place objects ("left of", "above"). The network then
            takes ``in_channels + 2`` channels and its last 2 output channels are dropped.
    """

    image_size: int = 32
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] | None = None
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    dropout: float = 0.0
    num_classes: int = 0
    text_dim: int = 0
    max_text_len: int = 32
    coord_channels: bool = False

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists.
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        levels = len(self.block_out_channels)
        if self.attention_levels is None:
            self.attention_levels = (False,) * (levels - 1) + (True,)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if levels < 1 or len(self.attention_levels) != levels:
            raise GenimageError(
                f"UNet attention_levels {self.attention_levels} needs one flag per entry of "
                f"block_out_channels {self.block_out_channels}"
            )
        for ch, att in zip(self.block_out_channels, self.attention_levels):
            if ch % self.norm_num_groups:
                raise GenimageError(f"UNet channels {ch} not divisible by norm_num_groups={self.norm_num_groups}")
            if (att or ch == self.block_out_channels[-1]) and ch % self.attention_head_dim:
                raise GenimageError(f"UNet channels {ch} not divisible by attention_head_dim={self.attention_head_dim}")
        if self.image_size % 2 ** (levels - 1):
            raise GenimageError(f"UNet image_size={self.image_size} must be divisible by {2 ** (levels - 1)}")
        if self.num_classes < 0 or self.text_dim < 0:
            raise GenimageError("UNet num_classes and text_dim must be >= 0 (0 disables that conditioning)")


class UNet(nn.Module):
    """UNet mapping ``(x, c_noise, cond) -> raw output`` (see ``base.Backbone``).

    Attributes:
        diffusers_model: The network: a ``NativeUNet`` or (``impl="diffusers"``) diffusers'
            ``UNet2DModel`` (no text) / ``UNet2DConditionModel`` (text). Its timestep input is our ``c_noise``;
            with text it needs the null-token substitution of ``self.null_text`` first.

    Args:
        config: A :class:`UNetConfig`.
        impl: ``"native"`` (default): genimage's own copy of the network
            (:mod:`~genimage.models.backbones.unet_native`: same parameters, names and bits,
            without importing diffusers); ``"diffusers"``: diffusers' own classes.
    """

    def __init__(self, config: UNetConfig, impl: str = "native") -> None:
        super().__init__()
        self.config = cfg = config
        levels = len(cfg.block_out_channels)
        net_in = cfg.in_channels + (2 if cfg.coord_channels else 0)
        if impl not in ("native", "diffusers"):
            raise GenimageError(f"UNet impl must be 'native' or 'diffusers', got {impl!r}")
        if impl == "native":
            from genimage.models.backbones.unet_native import NativeUNet

            heads = tuple(max(ch // cfg.attention_head_dim, 1) for ch in cfg.block_out_channels)
            self.diffusers_model = NativeUNet(
                in_channels=net_in, block_out_channels=cfg.block_out_channels,
                layers_per_block=cfg.layers_per_block, attention_levels=cfg.attention_levels,
                attention_head_dim=cfg.attention_head_dim, heads=heads, norm_num_groups=cfg.norm_num_groups,
                dropout=cfg.dropout, num_class_embeds=cfg.num_classes + 1 if cfg.num_classes else 0,
                text_dim=cfg.text_dim)
            if cfg.text_dim:
                self.null_text = NullTextToken(cfg.text_dim)
            make_batch_invariant(self.diffusers_model)
            self._multiple = 2 ** (levels - 1)
            return
        common = dict(
            sample_size=cfg.image_size,
            in_channels=net_in,
            out_channels=net_in,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_num_groups,
            dropout=cfg.dropout,
            num_class_embeds=cfg.num_classes + 1 if cfg.num_classes else None,
            flip_sin_to_cos=True,
            freq_shift=0,
        )
        if cfg.text_dim:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

            down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
            up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
            # diffusers' UNet2DConditionModel reads `attention_head_dim` as the number of heads.
            heads = tuple(max(ch // cfg.attention_head_dim, 1) for ch in cfg.block_out_channels)
            self.diffusers_model = UNet2DConditionModel(
                down_block_types=down,
                up_block_types=up,
                mid_block_type="UNetMidBlock2DCrossAttn",
                cross_attention_dim=cfg.text_dim,
                attention_head_dim=heads,
                **common,
            )
            self.null_text = NullTextToken(cfg.text_dim)
        else:
            from diffusers.models.unets.unet_2d import UNet2DModel

            down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
            up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
            self.diffusers_model = UNet2DModel(
                down_block_types=down, up_block_types=up, attention_head_dim=cfg.attention_head_dim, **common
            )
        make_batch_invariant(self.diffusers_model)  # time-embedding linears see only B rows
        self._multiple = 2 ** (levels - 1)

    def use_diffusers(self) -> nn.Module:
        """Swap the network for diffusers' own class holding the same weights (for what needs
        diffusers' methods: LoRA adapters through peft, ``save_pretrained`` on export) and
        return it; a no-op when it is already diffusers'. Outputs stay the same bits."""
        from genimage.models.backbones.unet_native import NativeUNet

        native = self.diffusers_model
        if not isinstance(native, NativeUNet):
            return native
        p = next(native.parameters())
        model = UNet(self.config, impl="diffusers").diffusers_model
        model.load_state_dict(native.state_dict())
        model.to(device=p.device, dtype=p.dtype).train(native.training).requires_grad_(p.requires_grad)
        self.diffusers_model = model
        return model

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None, control=None
    ) -> torch.Tensor:
        """Args:
            x: Noisy input ``(B, C, H, W)``, ``H`` and ``W`` divisible by ``2 ** (levels - 1)``.
            c_noise: Noise-level conditioning ``(B,)``.
            cond: Optional dict with ``"label"`` and/or ``"text"``/``"text_mask"``.
            control: Optional ``(x, c_noise, label_idx, text, text_mask) -> dict`` called on the
                prepared inputs; its dict (ControlNet residuals, :mod:`genimage.models.control`)
                is passed on to the network as keyword arguments.

        Returns:
            Raw output ``(B, C, H, W)`` in the dtype of ``x``.
        """
        cfg = self.config
        b = x.shape[0]
        if x.dim() != 4 or x.shape[1] != cfg.in_channels or x.shape[2] % self._multiple or x.shape[3] % self._multiple:
            raise GenimageError(
                f"UNet expects input (B, {cfg.in_channels}, H, W) with H, W divisible by {self._multiple}, "
                f"got {tuple(x.shape)}"
            )
        if c_noise.shape != (b,):
            raise GenimageError(f"c_noise must have shape ({b},), got {tuple(c_noise.shape)}")
        idx, text, mask = read_conditioning(
            cond, b, num_classes=cfg.num_classes, text_dim=cfg.text_dim, max_text_len=cfg.max_text_len, device=x.device
        )
        if b == 1:
            # oneDNN convolutions sum in a different order for a batch of one; run the
            # sample twice so its result matches any larger batch bit for bit.
            x, c_noise = x.expand(2, -1, -1, -1), c_noise.expand(2)
            idx = None if idx is None else idx.expand(2)
            text = None if text is None else text.expand(2, -1, -1)
            mask = None if mask is None else mask.expand(2, -1)
        if text is not None:
            text, mask = self.null_text(text, mask)
        if cfg.coord_channels:
            x = torch.cat([x, coordinate_channels(x)], dim=1)
        extra = {} if control is None else control(x, c_noise, idx, text, mask)
        if text is None:
            out = self.diffusers_model(x, c_noise, class_labels=idx, return_dict=False, **extra)[0]
        else:
            out = self.diffusers_model(
                x,
                c_noise,
                encoder_hidden_states=text,
                class_labels=idx,
                encoder_attention_mask=mask,
                return_dict=False,
                **extra,
            )[0]
        return out[:b, : cfg.in_channels].to(x.dtype)


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)``: the column (x) and row (y) coordinate of each position of ``x``,
    each from -1 (left / top) to 1 (right / bottom), in ``x``'s dtype and device (CoordConv)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(h, 1).expand(h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, w).expand(h, w)
    return torch.stack([xs, ys]).unsqueeze(0).expand(b, -1, -1, -1)


BACKBONES.register("unet")((UNetConfig, UNet))
