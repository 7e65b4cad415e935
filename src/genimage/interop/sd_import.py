"""Import Stable-Diffusion-format models (SD 1.x / 2.x, SD-Turbo, LCM-style) from local files.

Two sources are accepted wherever genimage takes ``--model PATH``:

* a **diffusers pipeline folder** (``model_index.json``, ``unet/``, ``vae/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``), as ``save_pretrained`` writes it;
* a **single-file checkpoint** ``NAME.safetensors`` in the original (CompVis /
  AUTOMATIC1111) layout (``model.diffusion_model.*``, ``first_stage_model.*``,
  ``cond_stage_model.*``). Such a file carries weights only, so the folder that holds it
  must also hold the configs and tokenizer of a diffusers pipeline of the same
  architecture (``model_index.json`` and the parts' ``config.json``/tokenizer files; their
  weights are not needed). diffusers converts the keys (``from_single_file`` with that
  local folder as ``config``); nothing is downloaded.

The model becomes an ordinary genimage latent diffusion model: the UNet is the backbone
(:class:`~genimage.interop.sd_modules.SDUNet`), the scheduler's ``alphas_cumprod`` the noise
path (:class:`~genimage.interop.sd_path.DiscretePath`), the VAE the attached autoencoder and
CLIP the text encoder, so every sampler, classifier-free guidance with negative prompts,
img2img, inpainting, outpainting, records, replay and the watermark work unchanged.
Weights load from safetensors only (pickle is refused by content); the record's
``model_sha256`` is the sha256 of the single file, or for a folder of the list of the three
parts' file hashes (``unet:SHA\\nvae:SHA\\ntext_encoder:SHA\\n``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genimage.errors import GenimageError

if TYPE_CHECKING:
    from genimage.models.config import ModelConfig

#: ``ModelConfig.family_config["format"]`` of an imported model.
SD_FORMAT = "stable-diffusion"
#: ``ModelConfig.family_config["text_conditioning"]``: CLIP states, the empty prompt encoded.
SD_TEXT = "sd-clip"
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_WEIGHT_NAMES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
_FILE_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
# genimage's default sampler for each diffusers scheduler class (DDIM == diffusers' DDIM / Euler).
_SAMPLERS = {"LCMScheduler": "consistency", "DPMSolverMultistepScheduler": "dpmpp_2m",
             "EulerAncestralDiscreteScheduler": "ddpm", "DDPMScheduler": "ddpm"}


# ---------------------------------------------------------------------------- recognising a source
def is_sd_source(path: str | Path) -> bool:
    """True for a diffusers pipeline folder (``model_index.json``, no genimage ``config.json``)
    or a single weights file (checked further by :func:`check_single_file`)."""
    p = Path(path)
    if p.is_dir():
        return (p / "model_index.json").is_file() and not (p / "config.json").is_file()
    return p.is_file() and p.suffix.lower() in _FILE_SUFFIXES


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise GenimageError(f"{what} is missing: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenimageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GenimageError(f"{path} must hold a JSON object")
    return data


def check_pipeline_folder(folder: Path) -> dict[str, Any]:
    """Read ``model_index.json`` of a diffusers folder and reject what genimage cannot run
    (SDXL, transformer pipelines, missing parts); returns the index."""
    index = _read_json(folder / "model_index.json", "model_index.json")
    cls = str(index.get("_class_name", ""))
    if "XL" in cls or "text_encoder_2" in index:
        raise GenimageError(f"{folder} is an SDXL pipeline ({cls or 'two text encoders'}): SDXL is not supported; "
                            f"genimage imports Stable Diffusion 1.x / 2.x (one CLIP text encoder, a UNet)")
    if "transformer" in index or "unet" not in index:
        raise GenimageError(f"{folder} is a {cls or 'diffusers'} pipeline without a UNet (a transformer model such as "
                            f"SD3 or Flux): not supported; genimage imports Stable Diffusion 1.x / 2.x UNet pipelines")
    missing = [p for p in PARTS if p not in index or not (folder / p).is_dir()]
    if missing:
        raise GenimageError(f"{folder} lacks the part(s) {', '.join(missing)} of a Stable Diffusion pipeline "
                            f"(model_index.json + {', '.join(PARTS)}); copy the complete folder")
    return index


def _check_unet_config(cfg: dict[str, Any], where: str) -> None:
    if cfg.get("addition_embed_type") == "text_time":
        raise GenimageError(f"{where}: this UNet takes SDXL's extra embeddings (addition_embed_type text_time): "
                            f"SDXL is not supported")
    if cfg.get("in_channels", 4) != 4 or cfg.get("out_channels", 4) != 4:
        raise GenimageError(f"{where}: a UNet with {cfg.get('in_channels')} input channels (an inpainting / depth / "
                            f"instruct checkpoint) is not supported; use the base model (genimage inpaints with it)")
    for key, what in (("time_cond_proj_dim", "a guidance embedding (LCM-distilled UNet)"),
                      ("class_embed_type", "a class embedding (e.g. the x4 upscaler)"),
                      ("addition_embed_type", "additional embeddings")):
        if cfg.get(key):
            raise GenimageError(f"{where}: UNets with {what} ({key}) are not supported; genimage imports plain "
                                f"SD 1.x / 2.x UNets (LCM-LoRA / SD-Turbo-style models are)")
    if not cfg.get("cross_attention_dim"):
        raise GenimageError(f"{where}: the UNet has no cross-attention; not a Stable Diffusion UNet")


def check_single_file(path: Path) -> Path:
    """``path`` if it is a single-file SD 1.x/2.x checkpoint in safetensors with a config
    folder beside it; otherwise a one-line :class:`GenimageError` saying why not."""
    from genimage.utils.weights import sniff_weights_format

    kind = sniff_weights_format(path)
    if kind in ("pickle", "zip-pickle"):
        raise GenimageError(f"{path} is a pickle checkpoint ({path.suffix or 'no extension'}): genimage loads only "
                            f".safetensors (unpickling can run code); convert it in a trusted session, e.g. "
                            f"safetensors.torch.save_file(torch.load(path, weights_only=True)['state_dict'], 'model.safetensors')")
    if kind != "safetensors":
        raise GenimageError(f"{path} is not a safetensors file (bad header); is the file complete?")
    keys = _file_keys(path)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        raise GenimageError(f"{path} is an SDXL checkpoint (conditioner.embedders.*): SDXL is not supported; genimage "
                            f"imports Stable Diffusion 1.x / 2.x")
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise GenimageError(f"--model takes a model folder (config.json + model.safetensors), a diffusers Stable "
                            f"Diffusion folder or an SD single-file checkpoint; {path} is none of these "
                            f"(no model.diffusion_model.* weights)")
    for prefix, part in (("first_stage_model.", "the VAE (first_stage_model.*)"),
                         ("cond_stage_model.", "the text encoder (cond_stage_model.*)")):
        if not any(k.startswith(prefix) for k in keys):
            raise GenimageError(f"{path} lacks {part}; genimage needs a complete SD checkpoint (UNet, VAE, text encoder)")
    config_dir = path.parent
    if not (config_dir / "model_index.json").is_file():
        raise GenimageError(f"{path} is a single-file SD checkpoint, which carries no configs or tokenizer: put it in a "
                            f"folder that also holds a diffusers pipeline's model_index.json, unet/vae/text_encoder "
                            f"config.json, tokenizer/ and scheduler/ of the same architecture (weights not needed)")
    check_pipeline_folder(config_dir)
    return path


def _file_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # corrupt header
        raise GenimageError(f"could not read {path} as safetensors: {exc}") from None


def config_dir_of(source: Path) -> Path:
    """The diffusers folder whose configs describe ``source`` (itself, or a file's folder)."""
    return source if source.is_dir() else source.parent


# ---------------------------------------------------------------------------- the model config
def sd_config_fields(source: str | Path) -> dict[str, Any]:
    """The genimage :class:`~genimage.models.config.ModelConfig` fields of an SD folder or
    single file (no weights are read): ``ModelConfig(**sd_config_fields(source))``.

    Sampling defaults follow the scheduler: LCM -> 4 consistency steps without guidance;
    ``timestep_spacing = "trailing"`` (SD-Turbo-style) -> 1 step without guidance;
    otherwise 20 DDIM steps at guidance 7.5. The schedule is always ``"discrete"`` (the
    scheduler's own timesteps)."""
    source = Path(source).resolve()
    if source.is_dir():
        check_pipeline_folder(source)
    else:
        check_single_file(source)
    cdir = config_dir_of(source)
    unet = _read_json(cdir / "unet" / "config.json", "the UNet config (unet/config.json)")
    _check_unet_config(unet, str(cdir / "unet"))
    vae = _read_json(cdir / "vae" / "config.json", "the VAE config (vae/config.json)")
    sched = _read_json(cdir / "scheduler" / "scheduler_config.json", "the scheduler config (scheduler/scheduler_config.json)")
    text = _read_json(cdir / "text_encoder" / "config.json", "the text encoder config (text_encoder/config.json)")
    if text.get("model_type") not in (None, "clip_text_model", "clip"):
        raise GenimageError(f"{cdir / 'text_encoder'}: a {text.get('model_type')} text encoder is not supported "
                            f"(Stable Diffusion 1.x / 2.x use CLIP)")
    kind = str(sched.get("prediction_type", "epsilon"))
    if kind not in _PREDICTIONS:
        raise GenimageError(f"scheduler prediction_type {kind!r} is not supported (epsilon, v_prediction, sample)")
    factor = 2 ** (len(vae.get("block_out_channels", [0])) - 1)
    latent = int(unet.get("sample_size") or 64)
    cls = str(sched.get("_class_name", "DDIMScheduler"))
    if cls == "LCMScheduler":
        sampler, steps, guidance = "consistency", 4, 1.0
    elif sched.get("timestep_spacing") == "trailing":
        sampler, steps, guidance = _SAMPLERS.get(cls, "ddim"), 1, 1.0
    else:
        sampler, steps, guidance = _SAMPLERS.get(cls, "ddim"), 20, 7.5
    return dict(
        backbone="sd-unet", backbone_config={k: v for k, v in unet.items() if not k.startswith("_")},
        objective="stable-diffusion", path="sd-discrete", prediction=_PREDICTIONS[kind],
        image_size=latent * factor, channels=int(vae.get("in_channels", 3)), text_encoder=str(source),
        text_max_length=int(text.get("max_position_embeddings", 77)), sampler=sampler, schedule="discrete",
        steps=steps, guidance=guidance,
        family_config={"format": SD_FORMAT, "source": str(source), "text_conditioning": SD_TEXT, "scheduler": sched,
                       "vae_scaling_factor": vae.get("scaling_factor", 0.18215)},
        autoencoder=str(cdir / "vae"), latent_shape=[int(unet.get("in_channels", 4)), latent, latent],
        training={"imported_from": str(source)})


def is_sd_config(config: ModelConfig) -> bool:
    return config.family_config.get("format") == SD_FORMAT


# ---------------------------------------------------------------------------- loading weights
def _part_weights(folder: Path, part: str) -> Path:
    """The safetensors file of ``folder/part``; a clear error if only pickle weights exist."""
    sub = folder / part
    name = _WEIGHT_NAMES[part]
    for cand in (sub / f"{name}.safetensors", sub / f"{name}.fp16.safetensors"):
        if cand.is_file():
            from genimage.utils.weights import sniff_weights_format

            if sniff_weights_format(cand) != "safetensors":
                raise GenimageError(f"{cand} is not a safetensors file (pickle or bad header); genimage refuses it")
            return cand
    pickles = sorted(p.name for pat in ("*.bin", "*.ckpt", "*.pt", "*.pth") for p in sub.glob(pat))
    if pickles:
        raise GenimageError(f"{sub} has only pickle weights ({pickles[0]}): genimage loads .safetensors only; save the "
                            f"part again with save_pretrained(..., safe_serialization=True) in a trusted session")
    if any(sub.glob("*.index.json")):
        raise GenimageError(f"{sub} holds sharded weights, which genimage does not import; save it unsharded")
    raise GenimageError(f"the {part} weights are missing: {sub} has no {name}.safetensors")


def _variant(path: Path) -> str | None:
    return "fp16" if path.name.endswith(".fp16.safetensors") else None


def weights_sha256(source: Path) -> str:
    """sha256 identifying the weights of ``source`` (see the module docstring)."""
    from genimage.utils.weights import sha256_file

    if source.is_file():
        return sha256_file(source)
    lines = "".join(f"{part}:{sha256_file(_part_weights(source, part))}\n" for part in ("unet", "vae", "text_encoder"))
    return hashlib.sha256(lines.encode()).hexdigest()


def _loading(what: str, where: Path):
    """Turn diffusers/transformers loading errors into one-line GenimageErrors."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        try:
            yield
        except GenimageError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GenimageError(f"cannot load the {what} from {where}: {first}") from None

    return ctx()


def _single_file_state(source: Path) -> dict[str, torch.Tensor]:
    from genimage.utils.weights import load_safetensors

    return load_safetensors(source)


def load_sd_parts(source: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The diffusers ``(UNet2DConditionModel, AutoencoderKL)`` of ``source``, float32, eval mode."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if source.is_dir():
        out = []
        for cls, part in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
            weights = _part_weights(source, part)
            with _loading(part, source / part):
                out.append(cls.from_pretrained(source, subfolder=part, use_safetensors=True, local_files_only=True,
                                               variant=_variant(weights), torch_dtype=torch.float32))
        unet, vae = out
    else:
        state = _single_file_state(source)
        cdir = str(config_dir_of(source))
        with _loading("UNet", source):
            unet = UNet2DConditionModel.from_single_file(state, config=cdir, subfolder="unet", local_files_only=True,
                                                         torch_dtype=torch.float32)
        with _loading("VAE", source):
            vae = AutoencoderKL.from_single_file(state, config=cdir, subfolder="vae", local_files_only=True,
                                                 torch_dtype=torch.float32)
    return unet.eval().requires_grad_(False), vae.eval().requires_grad_(False)


def load_sd_text_encoder(config: ModelConfig):
    """The :class:`~genimage.interop.sd_modules.SDTextEncoder` of an imported model's config."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from genimage.interop.sd_modules import SDTextEncoder

    source = Path(config.family_config["source"])
    cdir = config_dir_of(source)
    with _loading("tokenizer", cdir / "tokenizer"):
        tokenizer = CLIPTokenizer.from_pretrained(cdir / "tokenizer", local_files_only=True)
    if source.is_dir():
        weights = _part_weights(source, "text_encoder")
        with _loading("text encoder", source / "text_encoder"):
            model = CLIPTextModel.from_pretrained(source / "text_encoder", use_safetensors=True, local_files_only=True,
                                                  variant=_variant(weights), torch_dtype=torch.float32)
    else:
        from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

        state = {k: v for k, v in _single_file_state(source).items() if k.startswith("cond_stage_model.")}
        with _loading("text encoder", source):
            model = create_diffusers_clip_model_from_ldm(CLIPTextModel, state, subfolder="text_encoder",
                                                         config=str(cdir), local_files_only=True,
                                                         torch_dtype=torch.float32)
    return SDTextEncoder(model, tokenizer, name=str(source))
