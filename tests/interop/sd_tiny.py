"""Tiny random Stable Diffusion pipelines, written in the real formats, for the interop tests.

:func:`write_tiny_sd` saves a diffusers ``StableDiffusionPipeline`` folder (diffusers' own
tiny test configuration: UNet block_out_channels (4, 8), AutoencoderKL (4, 8), a 2-layer
CLIPTextModel, a CLIP tokenizer from a small vocab/merges the test writes) and
:func:`write_single_file` the same weights as one file in the original CompVis /
AUTOMATIC1111 key layout (``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.*``), the inverse of diffusers' ``from_single_file``
conversion for this architecture.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

LATENT = 16  # latent side; the VAE halves once, so images are 32 px (enough for the watermark)


def _write_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("r", "e"), ("re", "d</w>")]
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + letters + [c + "</w>" for c in letters] + [a + b for a, b in merges]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    return tok, len(tokens)


def tiny_sd_pipeline(tmp: Path, prediction: str = "epsilon", scheduler: str = "ddim", channels=(4, 8)):
    """A random tiny ``StableDiffusionPipeline`` (float32), seeded; ``channels`` are the UNet's
    block_out_channels (cross-attention at every level but the first)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, LCMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer, vocab = _write_tokenizer(tmp / "_tok")
    torch.manual_seed(0)
    levels = len(channels)
    unet = UNet2DConditionModel(block_out_channels=tuple(channels), layers_per_block=1, sample_size=LATENT, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
                                up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=2, sample_size=2 * LATENT)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                        intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=vocab, max_position_embeddings=77))
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction)
    if scheduler == "ddim":
        sched = DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1, **common)
    elif scheduler == "turbo":
        sched = EulerDiscreteScheduler(timestep_spacing="trailing", **common)
    elif scheduler == "lcm":
        sched = LCMScheduler(**common)
    else:
        raise ValueError(scheduler)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def write_tiny_sd(folder: Path, **kw) -> Path:
    """Save a tiny pipeline to ``folder`` with ``save_pretrained`` (safetensors)."""
    pipe = tiny_sd_pipeline(folder.parent, **kw)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# ------------------------------------------------------------------ the original (LDM) key layout
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _unet_to_ldm(state: dict, config) -> dict:
    lpb = config.layers_per_block
    levels = len(config.block_out_channels)
    names = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
             "mid_block.resnets.1": "middle_block.2"}
    for i in range(levels):
        for j in range(lpb):
            n = 1 + i * (lpb + 1) + j
            names[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{n}.0"
            names[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{n}.1"
        names[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (lpb + 1)}.0.op"
        has_attn = "CrossAttn" in config.up_block_types[i]
        for j in range(lpb + 1):
            n = i * (lpb + 1) + j
            names[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{n}.0"
            names[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{n}.1"
        names[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv"
    out = {}
    for key, value in state.items():
        prefix = max((p for p in names if key.startswith(p + ".")), key=len)
        rest = key[len(prefix) + 1:]
        if ".resnets." in prefix:
            head, _, tail = rest.partition(".")
            rest = f"{_RESNET.get(head, head)}.{tail}"
        out[f"model.diffusion_model.{names[prefix]}.{rest}"] = value
    return out


def _vae_to_ldm(state: dict, config) -> dict:
    levels = len(config.block_out_channels)
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    resnet = {"conv_shortcut": "nin_shortcut"}
    out = {}
    for key, value in state.items():
        k = key
        for side in ("encoder", "decoder"):
            k = k.replace(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.")
            k = k.replace(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.")
            k = k.replace(f"{side}.conv_norm_out.", f"{side}.norm_out.")
        for i in range(levels):
            k = k.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            k = k.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            k = k.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block.")
            k = k.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        if ".mid_block.attentions.0." in k:
            side, rest = k.split(".mid_block.attentions.0.")
            name, _, param = rest.rpartition(".")
            k = f"{side}.mid.attn_1.{attn[name]}.{param}"
            if name != "group_norm" and value.ndim == 2:
                value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        for a, b in resnet.items():
            k = k.replace(f".{a}.", f".{b}.")
        out[f"first_stage_model.{k}"] = value
    return out


def write_single_file(pipe, path: Path) -> Path:
    """The pipeline's weights as one safetensors file in the original layout."""
    from safetensors.torch import save_file

    state = {}
    state.update(_unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(_vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{key}"] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
