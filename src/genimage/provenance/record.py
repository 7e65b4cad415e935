"""The generation record every genimage PNG carries, and replay from it.

The record is JSON in a PNG ``iTXt`` chunk with keyword ``genimage``: model name and the
sha256 of its weights, objective, path, sampler, schedule, steps, guidance, seed, prompt /
negative prompt / label, size, precision and package version — everything needed to
regenerate the image bit for bit (``genimage replay IMAGE.png``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from genimage.data.image_io import tensor_to_pil
from genimage.errors import GenimageError
from genimage.utils.atomic import atomic_path

PNG_KEY = "genimage"


@dataclass
class GenerationRecord:
    """Everything that determines one generated image.

    Attributes:
        model: Name or folder the model was loaded from.
        model_sha256: sha256 of the model's ``model.safetensors``.
        objective: Objective the model was trained with.
        path: Noise path.
        sampler: Sampler name.
        schedule: Timestep schedule name.
        steps: Sampler steps.
        guidance: Classifier-free guidance weight.
        seed: The image's seed.
        width: Image width in pixels.
        height: Image height in pixels.
        bf16: Whether the network ran under bfloat16 autocast.
        device: Device type the network ran on (``cpu``, ``cuda``, ``mps``); records written
            before this field existed were all made on the CPU.
        edit: For an edited image, :meth:`genimage.editing.spec.EditSpec.record`: the mode
            (img2img / inpaint / outpaint), strength and the sha256 of the input's pixels.
        watermark: The invisible mark the saved pixels carry (:mod:`genimage.provenance.watermark`:
            key id and strength), or ``None``.
        noise_mark: The watermark in the initial noise (:mod:`genimage.provenance.noise_mark`:
            method, key id, message, number of sign patterns), or ``None``; replay applies it again.
        prompt: Text prompt, if any.
        negative: Negative prompt, if any.
        label: Class label, if any.
        sampler_options: Extra sampler arguments (e.g. DDIM's eta).
        guidance_interval: ``[lo, hi]`` path times where guidance applied, if limited.
        lora: LoRAs merged into the model (:mod:`genimage.interop.lora`), in order: each
            ``{"path", "sha256", "scale"}``; ``None`` if none.
        control: Spatial control (:meth:`genimage.editing.control.ControlSpec.record`: control
            model and its sha256, kind, scale, sha256 of the control image's pixels), or ``None``.
        runtime: The CPU runtime that ran the backbone when it was not eager PyTorch
            (:mod:`genimage.runtimes`): ``{"name", "version"}``; ``None`` for eager. Such an
            image is not bit-exact with eager.
        genimage_version: Package version that made it.
    """

    model: str
    model_sha256: str
    objective: str
    path: str
    sampler: str
    schedule: str
    steps: int
    guidance: float
    seed: int
    width: int
    height: int
    bf16: bool = False
    device: str = "cpu"
    edit: dict[str, Any] | None = None
    watermark: dict[str, Any] | None = None
    prompt: str | None = None
    negative: str | None = None
    label: int | None = None
    sampler_options: dict[str, Any] | None = None
    genimage_version: str = ""
    guidance_interval: list[float] | None = None
    lora: list[dict[str, Any]] | None = None
    control: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    noise_mark: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        if data["guidance_interval"] is None:  # records without it keep their earlier exact form
            del data["guidance_interval"]
        if data["device"] == "cpu":  # likewise CPU records (all records before the field existed)
            del data["device"]
        for optional in ("edit", "watermark", "lora", "control", "runtime", "noise_mark"):  # absent unless used, like the fields above
            if data[optional] is None:
                del data[optional]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GenerationRecord":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def save_png(image: torch.Tensor, path: str | Path, record: GenerationRecord) -> Path:
    """Save ``image`` ``(C, H, W)`` in [-1, 1] as PNG with ``record`` embedded (and the
    watermark it names applied)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenimageError(f"output must be a .png file (the generation record lives in a PNG chunk), got {path}")
    data = png_bytes(image, record)
    with atomic_path(path, what="PNG", needed=len(data)) as tmp:
        Path(tmp).write_bytes(data)
    return path


def png_bytes(image: torch.Tensor, record: GenerationRecord) -> bytes:
    """The PNG file :func:`save_png` writes, in memory (the web service sends these): the
    image, marked as ``record.watermark`` says, with the record embedded, and a signed
    provenance manifest when a signing key is configured (:mod:`genimage.provenance.manifest`)."""
    from genimage.provenance.keys import configured_signer
    from genimage.provenance.manifest import encode_signed
    from genimage.provenance.watermark import apply_entry

    image = apply_entry(image, record.watermark)
    text = record.to_json()
    return encode_signed(tensor_to_pil(image), "PNG", json.loads(text), configured_signer(), png_text={PNG_KEY: text})


def read_record(path: str | Path) -> GenerationRecord:
    """Read the generation record of a genimage PNG."""
    path = Path(path)
    if not path.is_file():
        raise GenimageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            text = im.text.get(PNG_KEY) if hasattr(im, "text") else None
    except Exception as exc:
        raise GenimageError(f"{path} is not a readable image: {exc}") from None
    if not text:
        raise GenimageError(f"{path} carries no genimage generation record (was it made by genimage and saved as PNG?)")
    try:
        return GenerationRecord.from_json(text)
    except Exception as exc:
        raise GenimageError(f"{path}: generation record is damaged: {exc}") from None


def pil_pixels(image: Image.Image) -> torch.Tensor:
    """uint8 ``(H, W, C)`` pixels of a PIL image."""
    import numpy as np

    arr = np.array(image)
    return torch.from_numpy(arr[..., None] if arr.ndim == 2 else arr)


def read_pixels(path: str | Path) -> torch.Tensor:
    """uint8 ``(H, W, C)`` pixels of a PNG."""
    with Image.open(path) as im:
        return pil_pixels(im)


def png_pixels(image: torch.Tensor) -> torch.Tensor:
    """The uint8 ``(H, W, C)`` pixels :func:`save_png` writes for ``image`` ``(C, H, W)``."""
    return pil_pixels(tensor_to_pil(image))
