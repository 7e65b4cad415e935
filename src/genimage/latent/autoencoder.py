"""The first stage of a latent diffusion model: find, load, copy and decode with it.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models", Sec. 3) trains the denoiser on ``z = E(x)`` of a frozen autoencoder and
returns ``D(z)`` for a generated ``z``. Here ``E``/``D`` are the ``autoencoder`` family
(:class:`~genimage.families.vae.KLAutoencoder`): ``encode`` gives *scaled* latents
``scale_factor * mean(q(z|x))`` of unit std (their Sec. 4.3.2), ``decode`` inverts the scaling.

A latent model folder is self-contained: it holds its autoencoder in ``autoencoder/``
(``config.json`` + ``model.safetensors``), and ``ModelConfig.autoencoder`` names that folder;
``ModelConfig.training["autoencoder_sha256"]`` pins the exact weights, checked at load.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from genimage.errors import GenimageError
from genimage.models.config import (  # noqa: F401  (AUTOENCODER_DIR, locate_autoencoder: re-exported)
    AUTOENCODER_DIR, CONFIG_FILE, WEIGHTS_FILE, ModelConfig, locate_autoencoder,
)

#: Key of ``ModelConfig.training`` holding the sha256 of the autoencoder's ``model.safetensors``.
SHA_KEY = "autoencoder_sha256"
_DECODER_ATTR = "_genimage_latent_autoencoder"


@dataclass
class LoadedAutoencoder:
    """Attributes:
        model: The :class:`~genimage.families.vae.KLAutoencoder` in eval mode, frozen.
        config: Its config.
        folder: Folder holding its ``config.json`` and ``model.safetensors``.
        sha256: sha256 of ``model.safetensors`` (the cache key and provenance pin).
    """

    model: torch.nn.Module
    config: ModelConfig
    folder: Path
    sha256: str

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.latent_shape)  # type: ignore[return-value]


def resized_config(config: ModelConfig, image_size: int | None) -> ModelConfig:
    """``config`` for images of side ``image_size`` (``None``: unchanged).

    The autoencoder is fully convolutional (its mid-block attention takes any number of
    tokens), so the same weights encode any side that is a multiple of its factor ``f``;
    only the config's geometry (and with it ``latent_shape = (c, image_size / f, ...)``)
    changes. Latent diffusion relies on the same property: LDM's f4/f8 first stages are
    trained on 256 px crops and used at 512 px and beyond (Rombach et al. 2022, Sec. 4.3.2).
    """
    if image_size is None or int(image_size) == config.image_size:
        return config
    image_size = int(image_size)
    f = int(config.backbone_config.get("downsample", 1))
    if image_size < f or image_size % f:
        raise GenimageError(f"the autoencoder downsamples by {f}: --image-size must be a multiple of {f}, "
                            f"got {image_size}")
    bc = dict(config.backbone_config)
    if "image_size" in bc:
        bc["image_size"] = image_size
    return dataclasses.replace(config, image_size=image_size, backbone_config=bc)


def load_autoencoder(name_or_path: str | Path, expected_sha256: str | None = None,
                     image_size: int | None = None) -> LoadedAutoencoder:
    """Load an ``autoencoder``-family model folder (or run/checkpoint folder) for latent use.

    The discriminator (training-only) is not built, building does not touch the caller's
    RNG, and the weights are frozen. ``expected_sha256``, when given, must equal the sha256
    of ``model.safetensors``. ``image_size``, when given, builds it for that image side
    (:func:`resized_config`; the weights are the same).
    """
    from genimage.families import FAMILIES, load_all_families
    from genimage.models.folders import resolve_model_folder
    from genimage.utils.skip_init import skip_weight_init
    from genimage.utils.weights import load_safetensors, sha256_file

    path = Path(name_or_path)
    if not path.exists():
        raise GenimageError(f"autoencoder {str(name_or_path)!r} not found: give the folder of a model trained "
                            f"with `genimage train --family autoencoder` (config.json + model.safetensors)")
    folder = resolve_model_folder(path)
    config = ModelConfig.load(folder)
    if config.family != "autoencoder":
        raise GenimageError(f"{folder} holds a {config.family!r} model, not an autoencoder; train one with "
                            f"`genimage train --family autoencoder --preset f4 ...`")
    sha = sha256_file(folder / WEIGHTS_FILE)
    if expected_sha256 is not None and sha != expected_sha256:
        raise GenimageError(f"the autoencoder in {folder} (sha256 {sha[:12]}...) is not the one this model was "
                            f"trained with ({expected_sha256[:12]}...); restore its autoencoder/ folder")
    load_all_families()
    config = resized_config(config, image_size)
    build = dataclasses.replace(config, backbone_config={**config.backbone_config, "discriminator": False})
    state = load_safetensors(folder / WEIGHTS_FILE)
    with torch.random.fork_rng(devices=[]), skip_weight_init():  # every weight is loaded next
        model = FAMILIES.get("autoencoder").model_cls(build)
    if not set(model.state_dict()) <= set(state):  # something would keep uninitialised memory: build it properly
        with torch.random.fork_rng(devices=[]):
            model = FAMILIES.get("autoencoder").model_cls(build)
    model.load_sampling_state(state)
    model.eval().requires_grad_(False)
    return LoadedAutoencoder(model, config, folder, sha)


def load_latent_autoencoder(config: ModelConfig) -> LoadedAutoencoder:
    """The autoencoder of a latent model config, checked against its recorded sha256 and geometry."""
    if not config.autoencoder:
        raise GenimageError("this model is not a latent model (config.autoencoder is not set)")
    folder = Path(config.autoencoder)
    if not (folder / CONFIG_FILE).is_file():
        raise GenimageError(f"the autoencoder of this latent model is missing: {folder} has no {CONFIG_FILE}; "
                            f"copy the model together with its {AUTOENCODER_DIR}/ folder")
    ae = load_autoencoder(folder, expected_sha256=config.training.get(SHA_KEY), image_size=config.image_size)
    check_geometry(config, ae)
    return ae


def check_geometry(config: ModelConfig, ae: LoadedAutoencoder) -> None:
    """The model's pixel geometry is the autoencoder's, its latent shape the autoencoder's latents."""
    if (config.image_size, config.channels) != (ae.config.image_size, ae.config.channels):
        raise GenimageError(f"the autoencoder makes {ae.config.image_size}px images with {ae.config.channels} "
                            f"channels, the model config says {config.image_size}px with {config.channels}")
    if config.latent_shape is not None and tuple(config.latent_shape) != ae.latent_shape:
        raise GenimageError(f"the model's latent_shape {list(config.latent_shape)} differs from its autoencoder's "
                            f"{list(ae.latent_shape)}")
    c, h, _ = ae.latent_shape
    bc = config.backbone_config
    if (bc.get("in_channels", c), bc.get("image_size", h)) != (c, h):
        raise GenimageError(f"the backbone takes {bc.get('image_size')}px inputs with {bc.get('in_channels')} "
                            f"channels, but the autoencoder's latents are {list(ae.latent_shape)}")


def bundle_autoencoder(config: ModelConfig, folder: Path) -> ModelConfig:
    """Copy a latent model's autoencoder into ``folder/autoencoder`` (see :func:`copy_autoencoder`)
    and return the config to save there: ``autoencoder="autoencoder"``, its sha256 recorded."""
    ae = load_latent_autoencoder(config)
    copy_autoencoder(ae, Path(folder) / AUTOENCODER_DIR)
    return dataclasses.replace(config, autoencoder=AUTOENCODER_DIR, latent_shape=list(ae.latent_shape),
                               training={**config.training, SHA_KEY: ae.sha256})


def copy_autoencoder(source: LoadedAutoencoder, dest: Path) -> Path:
    """Copy the autoencoder's ``config.json`` and ``model.safetensors`` to folder ``dest`` atomically.

    The files go to a hidden temporary folder beside ``dest`` (fsynced), which is then renamed
    into place. An existing ``dest`` is kept if it holds the same weights (sha256), else it is
    an error: a run or model folder never silently switches autoencoders.
    """
    from genimage.latent.store import write_folder_atomically
    from genimage.utils.atomic import fsync_path
    from genimage.utils.weights import sha256_file

    dest = Path(dest)
    if (dest / WEIGHTS_FILE).is_file():
        if sha256_file(dest / WEIGHTS_FILE) != source.sha256:
            raise GenimageError(f"{dest} already holds a different autoencoder; use another --out "
                                f"(or the autoencoder that run was started with)")
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise GenimageError(f"{dest} exists and is not an autoencoder folder; remove it or choose another --out")

    def write(tmp: Path) -> None:
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(source.folder / name, tmp / name)
            fsync_path(tmp / name)

    write_folder_atomically(dest, write)
    return dest


# ------------------------------------------------------------------ decoding at generation time
def attach_autoencoder(denoiser: torch.nn.Module, ae: LoadedAutoencoder) -> None:
    """Give a latent model's denoiser its decoder. Stored as a plain attribute, not a
    submodule, so the denoiser's parameters and ``state_dict`` stay the backbone's."""
    object.__setattr__(denoiser, _DECODER_ATTR, ae)


def attached_autoencoder(denoiser: torch.nn.Module) -> LoadedAutoencoder | None:
    """The autoencoder given by :func:`attach_autoencoder`, or ``None`` (pixel models)."""
    return getattr(denoiser, _DECODER_ATTR, None)


@torch.no_grad()
def decode_latents(ae: LoadedAutoencoder, latents: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in ``[-1, 1]`` (float32) from scaled latents, one image at a time.

    Decoding per image keeps generation's contract that image ``i`` depends only on seed
    ``i`` bit for bit: a convolution's result may depend on the batch it runs in.
    """
    model = ae.model
    param = next(model.parameters())
    if param.device != latents.device:
        model.to(latents.device)
    return torch.cat([model.decode(z[None].float()).float() for z in latents])
