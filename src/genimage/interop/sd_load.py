"""Load a Stable-Diffusion-format folder or single file as a genimage model (the weights;
:mod:`genimage.interop.sd_import` reads the configs and checks the files)."""

from __future__ import annotations

from pathlib import Path

from genimage.interop.sd_import import load_sd_parts, sd_config_fields, weights_sha256
from genimage.models.config import ModelConfig


def sd_model_config(source: str | Path) -> ModelConfig:
    """The genimage :class:`ModelConfig` of an SD folder or single file (no weights are read)."""
    return ModelConfig(**sd_config_fields(source))


def load_sd_model(source: str | Path, name: str | None = None):
    """Load an SD folder or single file as a :class:`~genimage.models.io.LoadedModel`."""
    from genimage.interop.sd_modules import SDAutoencoder, SDUNet
    from genimage.interop.sd_path import DiscretePath
    from genimage.latent.autoencoder import LoadedAutoencoder, attach_autoencoder
    from genimage.models.denoiser import Denoiser
    from genimage.models.loaded import LoadedModel

    source = Path(source).resolve()
    config = sd_model_config(source)
    unet, vae = load_sd_parts(source)
    path = DiscretePath(config.family_config["scheduler"])
    denoiser = Denoiser(SDUNet(unet), path, config.prediction).eval().requires_grad_(False)
    sha = weights_sha256(source)
    ae = SDAutoencoder(vae, config.latent_shape[-1]).eval().requires_grad_(False)
    attach_autoencoder(denoiser, LoadedAutoencoder(ae, config, Path(config.autoencoder), sha))
    return LoadedModel(denoiser, config, str(name if name is not None else source), source, sha)
