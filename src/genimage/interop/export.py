"""Export genimage's pixel UNet diffusion / flow models as diffusers folders.

What diffusers can hold:

* **VP paths** (``vp-linear``, ``vp-cosine``) with ``eps`` / ``v`` / ``x0`` prediction become a
  ``DDIMPipeline`` folder (``unet/`` a ``UNet2DModel``, ``scheduler/`` a ``DDIMScheduler``).
  The continuous path is written as the scheduler's ``trained_betas`` at the times the UNet
  was fed as timesteps: genimage feeds ``c_noise(t)`` (``999 t`` for vp-linear, ``1000 t`` for
  vp-cosine), so timestep ``k`` is ``t_k = k / scale`` and ``alphas_cumprod[k] = alpha(t_k)^2``
  (``beta_0 = 0`` since ``t_0 = 0``). ``set_alpha_to_one`` is true, so the last DDIM step lands
  on the clean image as genimage's does.
* The **linear (flow-matching / rectified-flow) path** with ``velocity`` prediction becomes
  ``unet/`` + a ``FlowMatchEulerDiscreteScheduler`` (``shift = 1``): diffusers feeds the UNet
  ``1000 sigma`` and steps ``x += (sigma_next - sigma) v``, genimage's ``c_noise`` and Euler step
  on that path (Lipman et al. 2023; Liu et al. 2023). There is no diffusers pipeline class for
  a pixel flow UNet, so the folder has no ``model_index.json``; load the two parts.

Class-conditional UNets keep diffusers' ``num_class_embeds = num_classes + 1``: pass
``class_labels`` ``0 .. num_classes - 1``; label ``num_classes`` is the learned null class
(the unconditional branch of classifier-free guidance). ``genimage_export.json`` records this,
the source model's sha256 and the timestep mapping.

Not exportable (a clear error says which): DiT backbones (diffusers' DiT transformer is
another architecture), latent models (genimage's autoencoder is not diffusers'
``AutoencoderKL``), text-conditional models (MiniLM/BERT text states with genimage's learned
null token and masks, which no diffusers pipeline feeds), EDM models (diffusers' EDM
schedulers feed the UNet ``0.25 ln sigma``, genimage ``250 ln sigma``), velocity prediction on
a VP path, and non-diffusion families (GAN, VAE, normalizing flows, consistency models).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genimage.errors import GenimageError

EXPORT_INFO = "genimage_export.json"
#: Diffusers' name of each genimage prediction type on a VP path.
VP_PREDICTIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def check_exportable(config) -> str:
    """``"ddim"`` or ``"flow"``: how ``config``'s model exports; a :class:`GenimageError` naming
    what diffusers lacks otherwise."""
    if config.family != "diffusion":
        raise GenimageError(f"a {config.family!r} model cannot be exported to diffusers: only diffusion / flow "
                            f"models with a UNet can")
    if config.family_config.get("format"):
        raise GenimageError("this model was imported from diffusers / Stable Diffusion files; use those files")
    if config.backbone != "unet":
        raise GenimageError(f"a {config.backbone!r} backbone cannot be exported: diffusers' equivalent of genimage's "
                            f"UNet is UNet2DModel; its DiT transformer is another architecture")
    if config.backbone_config.get("coord_channels"):
        raise GenimageError("a UNet with coordinate channels cannot be exported: diffusers' UNet2DModel does not "
                            "append them to its input")
    if config.autoencoder:
        raise GenimageError("a latent model cannot be exported: genimage's autoencoder is not diffusers' AutoencoderKL")
    if config.text_encoder or config.backbone_config.get("text_dim"):
        raise GenimageError("a text-conditional model cannot be exported: no diffusers pipeline feeds genimage's "
                            "text states (MiniLM/BERT with a learned null token and masks)")
    if config.path in ("vp-linear", "vp-cosine") and config.prediction in VP_PREDICTIONS:
        return "ddim"
    if config.path == "linear" and config.prediction == "velocity":
        return "flow"
    raise GenimageError(f"a {config.prediction!r}-prediction model on the {config.path!r} path cannot be exported: "
                        f"diffusers has DDIM for eps/v/x0 on VP paths and flow-matching Euler for velocity on the "
                        f"linear path (its EDM schedulers scale the noise input differently)")


def _timestep_scale(path) -> float:
    """``scale`` with ``c_noise(t) = scale * t`` (checked: linear through 0)."""
    c = path.c_noise(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    scale = float(c[2])
    if abs(float(c[0])) > 1e-9 or abs(float(c[1]) - scale / 2) > 1e-9:
        raise GenimageError(f"the {path.name!r} path's noise input is not proportional to t; cannot export it")
    return scale


def vp_trained_betas(path, num_train_timesteps: int = 1000) -> list[float]:
    """DDPM betas whose ``alphas_cumprod[k]`` is ``alpha(k / scale)^2`` of the continuous ``path``."""
    scale = _timestep_scale(path)
    t = torch.arange(num_train_timesteps, dtype=torch.float64) / scale
    if float(t[-1]) > path.t_max + 1e-9:
        raise GenimageError(f"{num_train_timesteps} timesteps reach past the {path.name!r} path's t_max")
    abar = path.alpha(t) ** 2
    prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return (1.0 - abar / prev).clamp(0.0, 1.0).tolist()


def diffusers_scheduler_for(config, path):
    """The diffusers scheduler equivalent to the model's path (see the module docstring)."""
    kind = check_exportable(config)
    if kind == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(num_train_timesteps=1000, trained_betas=vp_trained_betas(path), clip_sample=False,
                             set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing",
                             prediction_type=VP_PREDICTIONS[config.prediction])
    from diffusers import FlowMatchEulerDiscreteScheduler

    if _timestep_scale(path) != 1000.0:
        raise GenimageError("the linear path's noise input is not 1000 t; cannot export it")
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def export_diffusers(model: str | Path, out: str | Path) -> Path:
    """Write ``model`` (a genimage model name or folder) as a diffusers folder ``out``.

    Args:
        model: Bundled name, model folder or run folder of a pixel UNet diffusion/flow model.
        out: New or empty folder to write; written atomically (all or nothing).

    Returns:
        ``out``. Raises :class:`GenimageError` for a model diffusers cannot hold or an
        ``out`` that exists and is not empty.
    """
    from genimage.latent.store import write_folder_atomically
    from genimage.models.config import ModelConfig
    from genimage.models.io import load_model, resolve_model_folder
    from genimage.utils.weights import write_json_atomic

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenimageError(f"{out} exists and is not empty; choose a new folder for the export")
    kind = check_exportable(ModelConfig.load(resolve_model_folder(model)))
    loaded = load_model(model)
    cfg = loaded.config
    unet = loaded.denoiser.network.use_diffusers()  # diffusers' class, for save_pretrained
    scheduler = diffusers_scheduler_for(cfg, loaded.denoiser.path)
    info = {
        "format": "genimage-export-1", "source": str(loaded.folder), "source_sha256": loaded.weights_sha256,
        "path": cfg.path, "prediction": cfg.prediction, "scheduler": type(scheduler).__name__,
        "timestep": "the UNet's timestep k is genimage path time t = k / " + f"{_timestep_scale(loaded.denoiser.path):g}",
        "image_size": cfg.image_size, "channels": cfg.channels, "num_classes": cfg.num_classes,
        "null_class": cfg.num_classes if cfg.num_classes else None, "class_names": cfg.class_names,
        "defaults": {"steps": cfg.steps, "guidance": cfg.guidance},
    }

    def write(tmp: Path) -> None:
        if kind == "ddim" and not cfg.num_classes:
            from diffusers import DDIMPipeline

            DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        else:  # no diffusers pipeline passes class labels / runs a pixel flow UNet: the parts alone
            unet.save_pretrained(tmp / "unet", safe_serialization=True)
            scheduler.save_pretrained(tmp / "scheduler")
        write_json_atomic(info, tmp / EXPORT_INFO)

    write_folder_atomically(out, write)
    return out


def read_export_info(folder: str | Path) -> dict:
    """The ``genimage_export.json`` of an exported folder."""
    return json.loads((Path(folder) / EXPORT_INFO).read_text())
