"""Load any family's saved model as a :class:`~genimage.families.base.GenerativeModel`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genimage.families.base import GenerativeModel
from genimage.models.config import WEIGHTS_FILE, ModelConfig


@dataclass
class LoadedGenerator:
    """Attributes:
        model: The model in eval mode, sampling weights loaded.
        config: Its config.
        folder: The folder it was loaded from.
        weights_sha256: sha256 of ``model.safetensors``.
    """

    model: GenerativeModel
    config: ModelConfig
    folder: Path
    weights_sha256: str


def load_generator(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """A bundled name, model folder, checkpoint folder or run folder -> its generator."""
    from genimage.families import FAMILIES, load_all_families
    from genimage.models.io import resolve_model_folder
    from genimage.utils.finite import check_finite_weights
    from genimage.utils.weights import load_safetensors, sha256_file

    load_all_families()
    folder = resolve_model_folder(name_or_path)
    config = ModelConfig.load(folder)
    with torch.random.fork_rng(devices=[]):  # building must not disturb the caller's RNG
        model = FAMILIES.get(config.family).model_cls(config)
    state = load_safetensors(folder / WEIGHTS_FILE)
    check_finite_weights(state, folder / WEIGHTS_FILE)
    model.load_sampling_state(state)
    model.to(device).eval().requires_grad_(False)
    return LoadedGenerator(model, config, folder, sha256_file(folder / WEIGHTS_FILE))
