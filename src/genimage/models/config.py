"""The model config saved as ``config.json`` beside ``model.safetensors``.

One dataclass describes everything needed to rebuild a trained denoiser and to use it:
backbone and its config, noise path, prediction type, conditioning, image geometry and
sampling defaults (nanoGPT's ``GPTConfig`` / diffusers' ``save_pretrained`` idea).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genimage.errors import GenimageError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Name of the autoencoder subfolder inside a latent model folder (and a latent run folder).
AUTOENCODER_DIR = "autoencoder"


@dataclass
class ModelConfig:
    """Args:
        backbone: Backbone registry name (``"dit"`` or ``"unet"``).
        backbone_config: Keyword arguments of the backbone's config dataclass.
        objective: Objective it was trained with (``"flow-matching"``, ``"edm"``, ...).
        path: Noise path name.
        prediction: Prediction type of the raw output.
        sigma_data: Data standard deviation for EDM preconditioning.
        image_size: Side of generated images in pixels.
        channels: Image channels (1 or 3).
        num_classes: Number of class labels (0 = not class-conditional).
        class_names: Names of the classes (``class_names[label]``), if any.
        text_encoder: Text encoder name or folder (``"minilm"``), or ``None`` if not text-conditional.
        text_max_length: Token length of text conditioning.
        text_layers: Hidden layers of the text encoder whose states are concatenated
            (:class:`~genimage.conditioning.text.TextEncoder`); ``None`` = the last one.
        sampler: Default sampler name.
        schedule: Default timestep schedule name.
        steps: Default number of sampling steps.
        guidance: Default classifier-free guidance weight.
        guidance_interval: Default ``[lo, hi]`` of path times where guidance applies
            (:class:`~genimage.generation.SamplingOptions`); ``None`` = every step.
        training: Free-form record of how it was trained (steps, data, wall time).
        family: Model family (:mod:`genimage.families`); ``"diffusion"`` covers every
            denoising objective (DDPM, EDM, flow matching, rectified flow). For other
            families ``backbone_config`` holds the family's architecture settings and
            ``objective``/``path``/``prediction`` are empty.
        family_config: Family-specific settings that are not architecture (e.g. the teacher
            of a distilled model, consistency-training discretisation).
        autoencoder: Latent models only (Rombach et al. 2022): folder of the frozen
            ``autoencoder``-family model whose latents the backbone denoises; relative to the
            model folder (``"autoencoder"`` in a self-contained folder). :meth:`load` turns it
            into an absolute path (see :func:`genimage.latent.autoencoder.locate_autoencoder`).
            ``image_size``/``channels`` stay the *pixel* geometry of the generated images.
        latent_shape: Latent models only: ``[C, H, W]`` of the latents (the backbone's
            ``in_channels`` and ``image_size``).
        noise_mark: The noise-space watermark this model's generations carry by default
            (:mod:`genimage.provenance.noise_mark`), set only where it was measured to be found
            at no measurable quality cost (BENCHMARKS.md): ``{"patterns": M}`` spreads images
            over ``M`` keyed sign patterns. ``None`` (default): off unless asked for.
    """

    backbone: str
    backbone_config: dict[str, Any]
    objective: str
    path: str
    prediction: str
    sigma_data: float = 0.5
    image_size: int = 32
    channels: int = 3
    num_classes: int = 0
    class_names: list[str] | None = None
    text_encoder: str | None = None
    text_max_length: int = 32
    sampler: str = "euler"
    schedule: str = "uniform"
    steps: int = 16
    guidance: float = 1.0
    training: dict[str, Any] = field(default_factory=dict)
    family: str = "diffusion"
    family_config: dict[str, Any] = field(default_factory=dict)
    autoencoder: str | None = None
    latent_shape: list[int] | None = None
    guidance_interval: list[float] | None = None
    text_layers: list[int] | None = None
    noise_mark: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("autoencoder", "latent_shape", "guidance_interval", "text_layers", "noise_mark"):  # older configs keep their exact keys
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - known - {"genimage_version", "format"}
        if extra:
            raise GenimageError(f"config.json has unknown keys {sorted(extra)}; was it written by a newer genimage?")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: Path) -> None:
        from genimage import __version__
        from genimage.utils.weights import write_json_atomic

        write_json_atomic({**self.to_dict(), "genimage_version": __version__, "format": "genimage-model-1"},
                          Path(folder) / CONFIG_FILE)

    @classmethod
    def load(cls, folder: Path) -> "ModelConfig":
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            from genimage.interop.sd_import import is_sd_source, sd_config_fields

            if is_sd_source(folder):  # a Stable-Diffusion-format folder or single file
                return cls(**sd_config_fields(folder))
            raise GenimageError(f"{folder} is not a genimage model folder: {CONFIG_FILE} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # also a binary file (a pickle) named config.json
            raise GenimageError(f"{path} is not valid JSON: {str(exc).splitlines()[0][:120]}") from None
        config = cls.from_dict(data)
        if config.autoencoder:
            config.autoencoder = str(locate_autoencoder(Path(folder), config.autoencoder))
        return config


def locate_autoencoder(model_folder: Path, recorded: str) -> Path:
    """Where the autoencoder of the latent model in ``model_folder`` is, as an absolute path.

    In order: ``model_folder/autoencoder`` (a self-contained model folder); for a training
    checkpoint ``RUN/checkpoints/step-N``, the run's ``RUN/autoencoder``; else the recorded
    path (relative paths are relative to ``model_folder``). A missing folder is reported
    when the autoencoder is loaded, not here.
    """
    model_folder = Path(model_folder).resolve()
    candidates = [model_folder / AUTOENCODER_DIR]
    if model_folder.parent.name == "checkpoints":
        candidates.append(model_folder.parent.parent / AUTOENCODER_DIR)
    rec = Path(recorded)
    candidates.append(rec if rec.is_absolute() else model_folder / rec)
    for cand in candidates:
        if (cand / CONFIG_FILE).is_file():
            return cand
    return candidates[-1]
