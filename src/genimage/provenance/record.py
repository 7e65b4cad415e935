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
from PIL import Image, PngImagePlugin

from genimage.errors import GenimageError

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
        prompt: Text prompt, if any.
        negative: Negative prompt, if any.
        label: Class label, if any.
        sampler_options: Extra sampler arguments (e.g. DDIM's eta).
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
    prompt: str | None = None
    negative: str | None = None
    label: int | None = None
    sampler_options: dict[str, Any] | None = None
    genimage_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GenerationRecord":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def to_uint8_hwc(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` in [-1, 1] -> uint8 ``(H, W, C)`` with round-half-to-even of ``(x + 1) * 127.5``."""
    x = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous()


def image_to_pil(image: torch.Tensor) -> Image.Image:
    arr = to_uint8_hwc(image).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB")


def save_png(image: torch.Tensor, path: str | Path, record: GenerationRecord) -> Path:
    """Save ``image`` ``(C, H, W)`` in [-1, 1] as PNG with ``record`` embedded."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenimageError(f"output must be a .png file (the generation record lives in a PNG chunk), got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_KEY, record.to_json())
    tmp = path.with_name(f".{path.name}.tmp")
    image_to_pil(image).save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)
    return path


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


def read_pixels(path: str | Path) -> torch.Tensor:
    """uint8 ``(H, W, C)`` pixels of a PNG."""
    import numpy as np

    with Image.open(path) as im:
        arr = np.array(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr)
