"""LoRA fine-tuning of a model's UNet with peft, saved in diffusers' LoRA layout.

Low-rank adaptation (Hu et al. 2022, "LoRA", Eq. 3): each attention projection ``W`` of the
UNet (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) becomes ``W + (alpha / r) B A`` with
``A (r x d_in)``, ``B (d_out x r)``; only ``A`` and ``B`` train, ``B`` starts at zero so
training starts at the base model. The loss is genimage's denoising objective
(:class:`~genimage.objectives.denoising.DenoisingObjective`) on the model's own path and
prediction type, on the model's latents for a latent model; for an imported Stable
Diffusion model the times are its integer training timesteps.

The result is ``OUT/pytorch_lora_weights.safetensors`` written by diffusers'
``StableDiffusionPipeline.save_lora_weights`` (keys ``unet.<module>.lora_A/lora_B``), so
``StableDiffusionPipeline.load_lora_weights(OUT)`` reads it, plus ``OUT/lora.json`` (base
model, its sha256, rank, steps, losses). :func:`apply_lora` merges one into a loaded
model's UNet with a scale (``W + scale (alpha / r) B A``) for generation; the record keeps
the file's sha256 and the scale, and replay applies them again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch

from genimage.errors import GenimageError

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_INFO = "lora.json"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
#: ``targets="all"``: the attention projections plus every convolution and feed-forward layer.
ALL_MODULES = TARGET_MODULES + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "conv_shortcut",
                                "conv_in", "conv_out", "time_emb_proj"]
TARGETS = {"attention": TARGET_MODULES, "all": ALL_MODULES}
ADAPTER = "genimage"


def _unet(denoiser):
    network = denoiser.network
    unet = network.use_diffusers() if hasattr(network, "use_diffusers") else getattr(network, "diffusers_model", None)
    if unet is None or not hasattr(unet, "add_adapter"):
        raise GenimageError("LoRA needs a text-conditional UNet (diffusers' UNet2DConditionModel: a genimage "
                            "--backbone unet text model or an imported Stable Diffusion model); this model has none")
    return unet


def parse_lora(spec: str) -> tuple[Path, float]:
    """``"PATH[:SCALE]"`` -> ``(path, scale)`` (scale 1 when omitted)."""
    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            path, scale = head, float(tail)
        except ValueError:
            path, scale = spec, 1.0
    if not (scale == scale) or abs(scale) > 100:
        raise GenimageError(f"--lora {spec!r}: the scale must be a number (e.g. PATH:0.8)")
    return Path(path), scale


def lora_file(path: str | Path) -> Path:
    """The LoRA safetensors file of ``path`` (a file, or a folder holding ``pytorch_lora_weights.safetensors``)."""
    p = Path(path)
    f = p / LORA_FILE if p.is_dir() else p
    if not f.is_file():
        raise GenimageError(f"LoRA weights not found: {f} (give a folder written by `genimage train --lora` or its "
                            f"{LORA_FILE})")
    return f


def apply_lora(loaded, path: str | Path, scale: float = 1.0) -> dict:
    """Merge the LoRA at ``path`` into ``loaded``'s UNet (in place) with ``scale``; returns the
    record entry ``{"path", "sha256", "scale"}``."""
    from diffusers import StableDiffusionPipeline

    from genimage.utils.weights import load_safetensors, sha256_file

    f = lora_file(path)
    unet = _unet(loaded.denoiser)
    state = load_safetensors(f)  # refuses pickle by content
    try:
        lora_state, alphas = StableDiffusionPipeline.lora_state_dict(state)
        unet.load_lora_adapter(lora_state, prefix="unet", network_alphas=alphas, adapter_name=ADAPTER)
    except (ValueError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GenimageError(f"{f} is not a LoRA of this model's UNet: {first}") from None
    unet.fuse_lora(lora_scale=float(scale), adapter_names=[ADAPTER])
    unet.unload_lora()
    unet.requires_grad_(False)
    return {"path": str(f.resolve()), "sha256": sha256_file(f), "scale": float(scale)}


def _discrete_time(batch: int, generator: torch.Generator, path) -> torch.Tensor:
    """Integer training timesteps ``k ~ U{0..N-1}`` at their path times ``(k + 1) / N``."""
    k = torch.randint(0, path.num_train_timesteps, (batch,), generator=generator)
    return path.time_of_timestep(k.double())


def train_lora(model: str | Path, data: str | Path, out: str | Path, *, rank: int = 4, steps: int = 100,
               lr: float = 1e-4, batch_size: int = 4, seed: int = 0, alpha: float | None = None,
               targets: str = "attention", progress: bool = False) -> Path:
    """Train a LoRA of ``model``'s UNet on an image folder and save it to ``out``.

    Args:
        model: Base model (bundled name, genimage folder, or an SD folder / single file).
        data: Image folder (:class:`~genimage.data.folder.ImageFolderDataset`); captions
            (``metadata.jsonl`` or ``<stem>.txt``) are needed for a text model.
        out: Folder to write ``pytorch_lora_weights.safetensors`` and ``lora.json`` into.
        rank: LoRA rank ``r`` (>= 1).
        steps: Optimizer steps (AdamW).
        lr: Learning rate.
        batch_size: Images per step (drawn with replacement from the folder).
        seed: Seed of the LoRA init, the batches and the noise.
        alpha: LoRA ``alpha``; default ``rank`` (scale 1).
        targets: ``"attention"`` (``to_q/to_k/to_v/to_out.0``, as diffusers' LoRA scripts) or
            ``"all"`` (also every convolution, projection and feed-forward layer).
        progress: Print the loss every 10% of the steps.

    Returns:
        ``out``.
    """
    import peft
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    from genimage.conditioning.conditioner import Conditioner
    from genimage.data.folder import ImageFolderDataset
    from genimage.latent.autoencoder import attached_autoencoder
    from genimage.latent.store import write_folder_atomically
    from genimage.models.io import load_model
    from genimage.objectives.denoising import DenoisingObjective
    from genimage.objectives.time_distributions import uniform_time
    from genimage.utils.weights import write_json_atomic

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise GenimageError(f"--lora takes a rank >= 1, got {rank!r}")
    if targets not in TARGETS:
        raise GenimageError(f"LoRA targets {targets!r}: choose one of {', '.join(TARGETS)}")
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise GenimageError("LoRA training needs steps >= 1, batch_size >= 1 and lr > 0")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenimageError(f"{out} exists and is not empty; choose a new --out for the LoRA")
    loaded = load_model(model)
    cfg, den = loaded.config, loaded.denoiser
    if cfg.family != "diffusion":
        raise GenimageError(f"LoRA training needs a diffusion / flow model; {model} is a {cfg.family!r} model")
    unet = _unet(den)
    if not Path(data).is_dir():
        raise GenimageError(f"--data {data}: LoRA training takes an image folder")
    dataset = ImageFolderDataset(data, image_size=cfg.image_size, channels=cfg.channels)
    if len(dataset) == 0:
        raise GenimageError(f"{data} has no usable images")
    conditioner = Conditioner(cfg)
    if conditioner.uses_text and not dataset.has_captions:
        raise GenimageError(f"{data} has no captions, which a text model needs (metadata.jsonl or <image>.txt files)")
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([it["image"] for it in items])
    ae = attached_autoencoder(den)
    with torch.no_grad():
        x0 = images if ae is None else torch.cat([ae.model.encode(im[None]).float() for im in images])
        cond = conditioner(labels=[it.get("label") for it in items] if conditioner.uses_labels else None,
                           captions=[it.get("caption", "") for it in items] if conditioner.uses_text else None,
                           batch=len(items))
    sd = conditioner.encodes_empty_prompt  # SD drops no captions (its null text is the encoded "")
    objective = DenoisingObjective(_discrete_time if hasattr(den.path, "num_train_timesteps") else uniform_time,
                                   0.0 if sd else 0.1)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(peft.LoraConfig(r=rank, lora_alpha=float(alpha or rank), init_lora_weights="gaussian",
                                         target_modules=TARGETS[targets]))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(items), (batch_size,), generator=g)
        batch = {"image": x0[idx], "cond": None if cond is None else {k: v[idx] for k, v in cond.items()}}
        loss = objective(den, batch, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % max(steps // 10, 1) == 0:
            print(f"step {step + 1}/{steps} loss {sum(losses[-10:]) / len(losses[-10:]):.4f}", flush=True)
    state = get_peft_model_state_dict(unet)  # peft keys (lora_A / lora_B), which diffusers' loaders read
    info = {"format": "genimage-lora-1", "base_model": str(loaded.folder), "base_sha256": loaded.weights_sha256,
                       "rank": rank, "alpha": float(alpha or rank), "steps": steps, "lr": lr, "batch_size": batch_size,
                       "seed": seed, "images": len(items), "target_modules": TARGETS[targets],
                       "loss_first10": sum(losses[:10]) / len(losses[:10]), "loss_last10": sum(losses[-10:]) / len(losses[-10:]),
                       "wall_s": time.perf_counter() - t0}

    def write(tmp: Path) -> None:
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=state, safe_serialization=True)
        write_json_atomic(info, tmp / LORA_INFO)

    write_folder_atomically(out, write)  # all or nothing
    return out


def apply_lora_specs(pipe, specs: Sequence[str] | None) -> None:
    """Apply ``--lora PATH[:SCALE]`` options to a :class:`~genimage.pipeline.Pipeline`."""
    for spec in specs or ():
        path, scale = parse_lora(spec)
        pipe.apply_lora(path, scale)
