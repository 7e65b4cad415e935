"""The result of loading a model (:func:`genimage.models.io.load_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genimage.models.config import ModelConfig
from genimage.models.denoiser import Denoiser


@dataclass
class LoadedModel:
    """A denoiser ready to sample, with what provenance records need.

    Attributes:
        denoiser: The model in eval mode.
        config: Its :class:`ModelConfig`.
        name: The name or folder it was loaded from.
        folder: Resolved folder.
        weights_sha256: sha256 of ``model.safetensors``.
    """

    denoiser: Denoiser
    config: ModelConfig
    name: str
    folder: Path
    weights_sha256: str
