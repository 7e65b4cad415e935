"""The three parts of a Stable Diffusion model as genimage sees them.

* :class:`SDUNet` — the backbone: diffusers' ``UNet2DConditionModel`` behind genimage's
  ``(x, c_noise, cond) -> raw`` contract (``c_noise`` is the discrete timestep,
  ``cond["text"]`` the CLIP states it cross-attends to; Rombach et al. 2022, Sec. 3.3).
* :class:`SDAutoencoder` — the first stage: diffusers' ``AutoencoderKL`` with the
  ``encode``/``decode``/``latent_shape`` interface of genimage's latent autoencoders; latents
  are scaled by the VAE's ``scaling_factor`` (0.18215 for SD 1.x/2.x; Sec. 4.3.2 of the paper).
* :class:`SDTextEncoder` — SD's text conditioning: the CLIP text model's last hidden state
  over the prompt padded with the tokenizer's pad token to ``model_max_length`` (77)
  tokens, no attention mask (as SD was trained), and the *encoded* empty prompt as the
  unconditional input of classifier-free guidance (not zeros, as genimage's own models use).

Every output is made bit-for-bit independent of what else is in the batch (so image *i*
depends only on seed *i* and replays exactly): linears run batch-invariant, a batch of one
runs as two, prompts are encoded one at a time and cached, images are decoded one at a time.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.nn.embeddings import make_batch_invariant


class SDUNet(nn.Module):
    """Args:
        unet: A diffusers ``UNet2DConditionModel`` (SD 1.x/2.x layout).

    ``forward(x (B, 4, h, w), c_noise (B,), cond={"text": (B, L, D)})`` returns the UNet's
    raw output (eps or v) of the shape of ``x``. A missing ``"text"`` is an error: an SD UNet
    has no learned null token (the unconditional input is the encoded empty prompt).
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.diffusers_model = make_batch_invariant(unet)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if not cond or "text" not in cond:
            raise GenimageError("a Stable Diffusion UNet needs text conditioning (cond['text']); build it with the "
                                "model's Conditioner (the empty prompt is the unconditional input)")
        b = x.shape[0]
        text = cond["text"].to(x.dtype)
        if text.shape[0] != b:
            raise GenimageError(f"cond['text'] has {text.shape[0]} rows for a batch of {b}")
        if b == 1:  # oneDNN sums a batch of one in another order; run it as two (see backbones/unet.py)
            x, c_noise, text = x.expand(2, -1, -1, -1), c_noise.expand(2), text.expand(2, -1, -1)
        out = self.diffusers_model(x, c_noise, encoder_hidden_states=text, return_dict=False)[0]
        return out[:b].to(x.dtype)


class SDAutoencoder(nn.Module):
    """Args:
        vae: A diffusers ``AutoencoderKL``.
        latent_size: Side of the latents the UNet denoises (image side / 2^(levels-1)).

    ``encode(x (B, 3, H, W) in [-1, 1])`` gives scaled latents ``scaling_factor * (mean - shift)``
    of the posterior (the mean, not a sample: genimage's edits start from it);
    ``decode(z)`` inverts the scaling and returns images in about ``[-1, 1]``.
    """

    def __init__(self, vae: nn.Module, latent_size: int) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.latent_shape = (int(vae.config.latent_channels), int(latent_size), int(latent_size))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.vae.encode(x.float()).latent_dist.mean
        return (mean - self.shift_factor) * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z.float() / self.scaling_factor + self.shift_factor, return_dict=False)[0]


class SDTextEncoder(nn.Module):
    """Args:
        model: A transformers ``CLIPTextModel`` (SD 1.x: OpenAI CLIP ViT-L/14's; SD 2.x: OpenCLIP ViT-H's).
        tokenizer: Its ``CLIPTokenizer``; ``model_max_length`` (77) is the padded length.
        name: Where it was loaded from (for messages).

    :meth:`encode` returns ``{"text": (B, L, D), "text_mask": (B, L) all True}``; the mask
    is there for genimage's conditioning contract, the SD UNet does not read it.
    """

    encodes_empty_prompt = True

    def __init__(self, model: nn.Module, tokenizer, name: str = "") -> None:
        super().__init__()
        self.model = make_batch_invariant(model.eval().requires_grad_(False))
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = int(min(tokenizer.model_max_length, model.config.max_position_embeddings))
        self.use_mask = bool(getattr(model.config, "use_attention_mask", False))
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> "SDTextEncoder":
        return super().train(False)

    @torch.no_grad()
    def _encode_one(self, prompt: str) -> torch.Tensor:
        enc = self.tokenizer([prompt], padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        mask = enc["attention_mask"].to(self.device) if self.use_mask else None
        return self.model(enc["input_ids"].to(self.device), attention_mask=mask)[0][0].float()

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Encode ``prompts`` (a list of B strings; ``""`` is SD's unconditional prompt)."""
        if isinstance(prompts, str):
            raise GenimageError("encode() takes a list of prompts, got one string; wrap it: [prompt]")
        rows = []
        for p in prompts:
            if not isinstance(p, str):
                raise GenimageError(f"prompts must be strings, got {type(p).__name__}")
            if p not in self._cache:
                self._cache[p] = self._encode_one(p)
            rows.append(self._cache[p])
        if not rows:
            return {"text": torch.zeros(0, self.max_length, self.dim), "text_mask": torch.zeros(0, self.max_length, dtype=torch.bool)}
        text = torch.stack(rows)
        return {"text": text, "text_mask": torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)}

    def forward(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.encode(prompts)
