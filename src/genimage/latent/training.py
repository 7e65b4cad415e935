"""Glue for ``genimage train --autoencoder``: a latent dataset, a self-contained run folder.

:func:`prepare_latent_training` loads the autoencoder, copies it into ``RUN/autoencoder``
(the run's checkpoints resolve it there, so a copied run folder still samples), and
returns the cached latents of the data (:mod:`genimage.latent.cache`) and, for
text-conditional training, the cached caption states (:mod:`genimage.latent.text_cache`).
The backbone is then built for the latent geometry: ``image_size = h`` and
``in_channels = C`` of the ``(C, h, h)`` latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genimage.errors import GenimageError
from genimage.latent.autoencoder import AUTOENCODER_DIR, SHA_KEY, LoadedAutoencoder, copy_autoencoder, load_autoencoder
from genimage.latent.cache import (LatentCacheEntry, check_data_geometry, default_cache_dir,
                                   load_or_build_latent_cache)
from genimage.latent.dataset import LatentDataset
from genimage.latent.text_cache import CachedTextEncoder, load_or_build_text_cache


@dataclass
class LatentTraining:
    """Attributes:
        dataset: The latents to train on (with the source's labels and captions).
        autoencoder: The autoencoder, as copied into the run folder.
        cache: The latent cache entry.
        text: Cached caption states for text conditioning, or ``None``.
        text_hit: Whether ``text`` came from disk (``None`` without text).
    """

    dataset: LatentDataset
    autoencoder: LoadedAutoencoder
    cache: LatentCacheEntry
    text: CachedTextEncoder | None = None
    text_hit: bool | None = None

    @property
    def latent_shape(self) -> list[int]:
        return list(self.autoencoder.latent_shape)

    def model_fields(self) -> dict[str, Any]:
        """``ModelConfig`` fields of the latent model: its autoencoder and latent shape, and a
        ``sigma_data`` (EDM preconditioning) equal to the std of the cached latents."""
        return {"autoencoder": str(self.autoencoder.folder.resolve()), "latent_shape": self.latent_shape,
                "sigma_data": round(float(self.cache.meta.get("latent_std", 1.0)), 4)}

    def training_record(self) -> dict[str, Any]:
        """Entries for ``ModelConfig.training`` (the sha256 pins the autoencoder at load time)."""
        return {SHA_KEY: self.autoencoder.sha256, "latent_cache": self.cache.key[:24]}

    def install_text_cache(self, conditioner: Any) -> None:
        """Make ``conditioner`` (a :class:`~genimage.conditioning.conditioner.Conditioner`)
        answer caption lookups from the cached states instead of running the encoder."""
        if self.text is not None:
            conditioner._text_encoder = self.text


def prepare_latent_training(autoencoder: str | Path, dataset: Any, out: str | Path, *, text_encoder: str | None,
                            text_max_length: int = 32, text_layers: list[int] | None = None, cache_dir: str | Path | None = None,
                            progress: bool = False) -> LatentTraining:
    """Load ``autoencoder``, copy it into ``out/autoencoder`` and load or build the caches.

    Args:
        autoencoder: Folder of an ``autoencoder``-family model (or its run folder).
        dataset: The pixel dataset; its geometry must be the autoencoder's.
        out: The run folder.
        text_encoder: Text encoder name for text conditioning (its caption states are cached
            too), or ``None``.
        text_max_length: Token length of the text states.
        text_layers: Hidden layers of the text encoder to concatenate (``None``: the last).
        cache_dir: Cache folder (default :func:`genimage.latent.cache.default_cache_dir`).
        progress: Show progress bars while encoding.
    """
    source = load_autoencoder(autoencoder, image_size=getattr(dataset, "image_size", None))
    check_data_geometry(dataset, source)
    local = copy_autoencoder(source, Path(out) / AUTOENCODER_DIR)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = load_or_build_latent_cache(dataset, source, cache_dir, progress=progress)
    ae = LoadedAutoencoder(source.model, source.config, local, source.sha256)
    prep = LatentTraining(entry.dataset(dataset), ae, entry)
    if text_encoder:
        if entry.captions is None:
            raise GenimageError("text conditioning needs captions, and the data has none")
        from genimage.conditioning.text import TextEncoder

        live = TextEncoder.from_name(text_encoder, max_length=text_max_length, layers=text_layers)
        prep.text, prep.text_hit = load_or_build_text_cache(entry.captions, live, cache_dir, progress=progress)
    return prep
