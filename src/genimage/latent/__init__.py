"""Latent diffusion (Rombach et al. 2022): train the denoiser on a frozen autoencoder's latents.

* :mod:`.autoencoder` — load/locate/copy the first stage, decode generated latents;
* :mod:`.cache` — encode a dataset once, keyed by encoder weights and dataset identity;
* :mod:`.text_cache` — the same for the text encoder's caption states;
* :mod:`.dataset` — the cached latents as a training dataset;
* :mod:`.training` — glue for ``genimage train --autoencoder``.
"""

from genimage.latent.autoencoder import (AUTOENCODER_DIR, LoadedAutoencoder, decode_latents, load_autoencoder,
                                         load_latent_autoencoder)
from genimage.latent.cache import LatentCacheEntry, dataset_identity, default_cache_dir, load_or_build_latent_cache
from genimage.latent.dataset import LatentDataset

__all__ = ["AUTOENCODER_DIR", "LoadedAutoencoder", "LatentCacheEntry", "LatentDataset", "dataset_identity",
           "decode_latents", "default_cache_dir", "load_autoencoder", "load_latent_autoencoder",
           "load_or_build_latent_cache"]
