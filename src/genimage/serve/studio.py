"""What the web service does, without the web: loaded models, one generation at a time, and
PNGs that carry their generation records.

:class:`Studio` keeps the last few pipelines it loaded (loading the shapes model takes about a
second) and serialises generation behind a lock: on a small CPU box two concurrent requests
would only share the same cores, and on a GPU they would share its memory. Requests wait
their turn instead of failing. Every image comes back as the PNG ``genimage sample`` would
have written, so ``genimage replay`` works on downloads from the service.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from genimage.errors import GenimageError


@dataclass
class Made:
    """One generated image: its seed, PNG bytes (record embedded) and record."""

    seed: int
    png: bytes
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "png_base64": base64.b64encode(self.png).decode("ascii"), "record": self.record}


class Studio:
    """Generation and editing for the service.

    Args:
        default_model: Model used when a request names none.
        device: ``auto`` / ``cpu`` / ``cuda`` / ...: where the models run.
        max_images: Most images one request may ask for.
        cache_size: Pipelines kept loaded.
        watermark: Mark the PNGs invisibly where they are large enough
            (:mod:`genimage.provenance.watermark`).
    """

    def __init__(self, default_model: str = "shapes", device: str = "auto", max_images: int = 16,
                 cache_size: int = 3, watermark: bool = True) -> None:
        from genimage.utils.device import resolve_device

        self.default_model = default_model
        self.device = resolve_device(device)
        self.max_images = max_images
        self.cache_size = cache_size
        self.watermark = watermark
        self._pipes: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()  # generation and the pipeline cache

    # ----------------------------------------------------------------------------- models
    def pipeline(self, model: str | None):
        """The loaded pipeline of ``model`` (least recently used ones are dropped)."""
        with self._lock:
            return self._load(model or self.default_model)

    def _load(self, name: str):
        from genimage.families.records import is_direct
        from genimage.models.config import ModelConfig
        from genimage.models.io import resolve_model_folder
        from genimage.pipeline import Pipeline

        if name not in self._pipes:
            family = ModelConfig.load(resolve_model_folder(name)).family
            if is_direct(family):
                raise GenimageError(f"the service runs diffusion and flow models; {name} is a {family} model "
                                    "(use `genimage sample` for it)")
            self._pipes[name] = Pipeline.from_pretrained(name, device=self.device)
            while len(self._pipes) > self.cache_size:
                self._pipes.popitem(last=False)
        self._pipes.move_to_end(name)
        return self._pipes[name]

    @staticmethod
    def describe(config) -> dict[str, Any]:
        """What a client needs to call a model: its conditioning and sampling defaults."""
        from genimage.conditioning.conditioner import Conditioner

        cond = Conditioner(config)
        conditioning = "text" if cond.uses_text else "class" if cond.uses_labels else "none"
        return {"image_size": config.image_size, "channels": config.channels, "family": config.family,
                "conditioning": conditioning, "classes": config.class_names if conditioning == "class" else None,
                "defaults": {"sampler": config.sampler, "schedule": config.schedule, "steps": config.steps,
                             "guidance": config.guidance}}

    def models(self) -> list[dict[str, Any]]:
        """The bundled diffusion / flow models, described (without loading their weights)."""
        from genimage.families.records import is_direct
        from genimage.models.config import ModelConfig
        from genimage.models.io import BUNDLED_DIR

        out = []
        for folder in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file()):
            config = ModelConfig.load(folder)
            if not is_direct(config.family):
                out.append({"name": folder.name, "default": folder.name == self.default_model,
                            **self.describe(config)})
        return out

    # ----------------------------------------------------------------------------- requests
    def _conditions(self, pipe, n: int, prompt: str | None, label: str | int | None, edit: bool = False):
        from genimage.pipeline import parse_label

        if pipe.conditioner.uses_text:
            if label is not None:
                raise GenimageError("this model takes a text prompt, not a label")
            return None, [prompt or ""] * n
        if pipe.conditioner.uses_labels:
            if prompt:
                raise GenimageError("this model is class-conditional: send a label (class name or number), not a prompt")
            if label is None or label == "":  # an edit without a label is unconditional; samples cycle the classes
                return (None if edit else [i % pipe.config.num_classes for i in range(n)]), None
            return [parse_label(pipe.config, label)] * n, None
        if prompt or label is not None:
            raise GenimageError("this model is unconditional: send neither a prompt nor a label")
        return None, None

    def run(self, *, model: str | None = None, prompt: str | None = None, label: str | int | None = None,
            negative: str | None = None, seed: int = 0, n: int = 1, sampler: str | None = None,
            schedule: str | None = None, steps: int | None = None, guidance: float | None = None,
            edit=None) -> tuple[list[Made], float]:
        """Generate (or, with ``edit``, edit) ``n`` images with seeds ``seed .. seed + n - 1``;
        returns them and the seconds spent generating."""
        from genimage.provenance.record import png_bytes

        if not 1 <= n <= self.max_images:
            raise GenimageError(f"n must be between 1 and {self.max_images} (this service's limit), got {n}")
        with self._lock:
            pipe = self.pipeline(model)
            pipe.watermark = self.watermark
            opts = pipe.options(sampler=sampler, schedule=schedule, steps=steps, guidance=guidance)
            labels, prompts = self._conditions(pipe, n, prompt, label, edit is not None)
            seeds = list(range(seed, seed + n))
            t0 = time.perf_counter()
            images = pipe(seeds, labels=labels, prompts=prompts, negative=negative, options=opts, edit=edit)
            seconds = time.perf_counter() - t0
            records = pipe.records(seeds, labels, prompts, negative, opts, edit=edit)
        return [Made(s, png_bytes(img, rec), _record_dict(rec)) for s, img, rec in zip(seeds, images, records)], seconds

    def edit_spec(self, model: str | None, image: bytes, mask: bytes | None, extend: str | None,
                  strength: float | None, resample: int, upscale: int | None = None):
        """The :class:`~genimage.editing.spec.EditSpec` of an uploaded image (and mask); empty
        form fields count as absent."""
        from genimage.editing.spec import build_edit, parse_extend

        cfg = self.pipeline(model).config
        return build_edit(image, cfg.image_size, cfg.channels, mask=mask, extend=parse_extend(extend) if extend else None,
                          upscale=upscale or None, strength=strength, resample=resample)


def _record_dict(record) -> dict[str, Any]:
    import json

    return json.loads(record.to_json())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
