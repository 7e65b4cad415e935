"""Build, save and load denoisers; resolve model names to folders.

A *model folder* holds ``config.json`` and ``model.safetensors`` (the weights used for
sampling: the EMA weights when training kept an EMA); a latent model's folder also holds
its autoencoder in ``autoencoder/`` (:mod:`genimage.latent`). Bundled models live in
``genimage/weights/NAME``; a training run folder resolves to its latest checkpoint.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from genimage.errors import GenimageError
from genimage.models.config import WEIGHTS_FILE, ModelConfig
from genimage.models.denoiser import Denoiser
from genimage.models.folders import BUNDLED_DIR, bundled_models, resolve_model_folder  # noqa: F401  (re-exported)
from genimage.models.loaded import LoadedModel
from genimage.paths.base import build_path
from genimage.utils.finite import check_finite_weights
from genimage.utils.weights import load_safetensors, save_safetensors, sha256_file


def build_denoiser(config: ModelConfig, initialise: bool = True) -> Denoiser:
    """A freshly initialised denoiser for ``config`` (a latent model's gets its autoencoder
    attached, for :func:`genimage.generation.generate` to decode with). ``initialise=False``
    leaves the network's weights uninitialised, for a caller that loads all of them next."""
    import genimage.models.backbones  # noqa: F401  (registers backbones)
    from genimage.models.backbones.base import build_backbone
    from genimage.utils.skip_init import skip_weight_init

    with contextlib.nullcontext() if initialise else skip_weight_init():
        network = build_backbone(config.backbone, dict(config.backbone_config))
    denoiser = Denoiser(network, build_path(config.path), config.prediction, config.sigma_data)
    if config.autoencoder:
        from genimage.latent.autoencoder import attach_autoencoder, load_latent_autoencoder

        attach_autoencoder(denoiser, load_latent_autoencoder(config))
    return denoiser


def load_model(name_or_path: str | Path) -> LoadedModel:
    """Load a model by bundled name or folder (safetensors only)."""
    folder = resolve_model_folder(name_or_path)
    from genimage.interop.sd_import import is_sd_source

    if is_sd_source(folder):  # Stable-Diffusion-format folder or single file
        from genimage.interop.sd_load import load_sd_model

        return load_sd_model(folder, str(name_or_path))
    config = ModelConfig.load(folder)
    if config.family == "superres":  # conditioned on a low-resolution image: genimage.editing.superres runs it
        raise GenimageError(f"{name_or_path} is an x{config.family_config.get('factor')} upscaler, not a generator; "
                            f"use it with genimage edit IMAGE --upscale {config.family_config.get('factor')} "
                            f"--upscaler {name_or_path}")
    denoiser = build_denoiser(config, initialise=False)  # every weight is loaded (strictly) below
    state = load_safetensors(folder / WEIGHTS_FILE)
    check_finite_weights(state, folder / WEIGHTS_FILE)
    missing, unexpected = denoiser.network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GenimageError(
            f"{folder / WEIGHTS_FILE} does not match its config.json "
            f"(missing {len(missing)} tensors, e.g. {missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})"
        )
    denoiser.eval().requires_grad_(False)
    return LoadedModel(denoiser, config, str(name_or_path), folder, sha256_file(folder / WEIGHTS_FILE))


def save_model(folder: str | Path, config: ModelConfig, network_state: dict[str, torch.Tensor]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (each atomically).

    A latent model's autoencoder is copied into ``folder/autoencoder`` and the config points
    there, so the folder is self-contained."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config.autoencoder:
        from genimage.latent.autoencoder import bundle_autoencoder

        config = bundle_autoencoder(config, folder)
    save_safetensors(network_state, folder / WEIGHTS_FILE)
    config.save(folder)
    return folder
