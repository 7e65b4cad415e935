"""The Python entry point for using a trained model.

Example::

    from genimage.pipeline import Pipeline
    pipe = Pipeline.from_pretrained("digits")          # bundled name or a model/run folder
    pipe.to("cuda")                                    # optional: any device; noise stays seeded on the CPU
    images = pipe(seeds=[0, 1, 2], labels=[3, 3, 3])   # (3, C, H, W) in [-1, 1], on the CPU
    pipe.save(images, pipe.records(seeds=[0, 1, 2], labels=[3, 3, 3]), "out/")
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from genimage import __version__
from genimage.conditioning.conditioner import Conditioner
from genimage.editing.spec import EditSpec
from genimage.errors import GenimageError
from genimage.generation import SamplingOptions, generate
from genimage.models.io import BUNDLED_DIR, LoadedModel, load_model
from genimage.provenance.record import GenerationRecord, read_record, save_png
from genimage.provenance.replay_check import ReplayResult, compare_with_png, replay_device  # noqa: F401 (public names)


def parse_label(config, text: str | int) -> int:
    """A class name or number of ``config``'s classes -> label."""
    names = config.class_names or []
    if isinstance(text, str) and text in names:
        return names.index(text)
    try:
        label = int(text)
    except (TypeError, ValueError):
        raise GenimageError(f"{text!r} is not a class of this model; classes: {', '.join(names) or 'none'}") from None
    if config.num_classes and not 0 <= label < config.num_classes:
        raise GenimageError(f"label {label} is out of range: this model has classes 0..{config.num_classes - 1}")
    return label


class Pipeline:
    """A loaded model plus its conditioner and sampling defaults.

    Args:
        loaded: The model as returned by :func:`genimage.models.io.load_model`.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.watermark = True  # saved images carry the invisible mark where they are large enough
        # a mark in the initial noise of generations (genimage.provenance.noise_mark): on by default
        # for models whose config says it works (ModelConfig.noise_mark), off otherwise
        self.noise_mark: dict | None = None
        if loaded.config.noise_mark:
            from genimage.provenance.noise_mark import model_entry

            self.noise_mark = model_entry(loaded.config)
        self.config = loaded.config
        self.conditioner = Conditioner(loaded.config)
        self.loras: list[dict] = []  # LoRAs merged into the network, for the records
        self.control = None  # spatial control applied to every call (genimage.editing.control.ControlSpec)
        self.runtime: dict | None = None  # the backbone's CPU runtime when not eager (genimage.runtimes), for the records
        folder = loaded.folder.resolve()
        self.model_ref = folder.name if folder.parent == BUNDLED_DIR.resolve() else str(folder)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu") -> "Pipeline":
        """Load a bundled model or a model / run folder onto ``device`` (``"auto"``: CUDA if present)."""
        return cls(load_model(name_or_path)).to(device)

    def apply_lora(self, path: str | Path, scale: float = 1.0) -> "Pipeline":
        """Merge a LoRA (``genimage train --lora`` output, diffusers' LoRA layout) into the
        network with ``scale``; recorded in every later record. Returns ``self``."""
        from genimage.interop.lora import apply_lora

        self.loras.append(apply_lora(self.loaded, path, scale))
        return self

    def use_runtime(self, name: str, bf16: bool = False) -> "Pipeline":
        """Run the backbone under CPU runtime ``name`` (``eager`` | ``onnxruntime`` | ``openvino``,
        :mod:`genimage.runtimes`); call it after LoRAs and control are set. Recorded in every
        later record. Returns ``self``."""
        from genimage.runtimes.apply import use_runtime

        self.runtime = use_runtime(self, name, bf16)
        return self

    @property
    def device(self) -> torch.device:
        p = next(self.loaded.denoiser.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "Pipeline":
        """Move the network (and a latent model's autoencoder) to ``device``; returns ``self``."""
        from genimage.utils.device import resolve_device

        self.loaded.denoiser.to(resolve_device(device))
        return self

    def options(self, **overrides) -> SamplingOptions:
        """Sampling options: the model's defaults with ``overrides`` (``None`` values ignored);
        bf16 by default only where :attr:`device` runs it fast."""
        from genimage.utils.precision import bf16_is_fast

        if overrides.get("bf16") is None:
            overrides["bf16"] = bf16_is_fast(self.device)
        return SamplingOptions.defaults(self.config, **overrides)

    def check_inputs(self, labels, prompts) -> None:
        if labels is not None and any(lab is not None for lab in labels) and not self.conditioner.uses_labels:
            raise GenimageError("this model is not class-conditional; drop --label")
        if prompts is not None and any(prompts) and not self.conditioner.uses_text:
            raise GenimageError("this model does not take text prompts; drop the prompt")

    def __call__(self, seeds: Sequence[int], labels: Sequence[int | None] | None = None,
                 prompts: Sequence[str] | None = None, negative: str | None = None,
                 options: SamplingOptions | None = None, batch_size: int = 64,
                 callback: Callable[[dict], None] | None = None, edit: EditSpec | None = None) -> torch.Tensor:
        """Generate one image per seed, or edit ``edit.image`` (img2img / inpainting); see
        :func:`genimage.generation.generate`."""
        self.check_inputs(labels, prompts)
        if self.control is not None:
            self.control.check(len(seeds), self.loaded.weights_sha256)
        return generate(self.loaded.denoiser, self.config, self.conditioner, seeds=list(seeds), labels=labels,
                        prompts=prompts, negative=negative, options=options or self.options(),
                        batch_size=batch_size, callback=callback, edit=edit, control=self.control,
                        noise_mark=self.noise_mark if edit is None else None)

    def records(self, seeds: Sequence[int], labels=None, prompts=None, negative: str | None = None,
                options: SamplingOptions | None = None, edit: EditSpec | None = None) -> list[GenerationRecord]:
        """The generation record of each image."""
        from genimage.provenance.watermark import record_entry

        o = options or self.options()
        c = self.config
        mark = record_entry(c.channels, c.image_size, c.image_size, self.watermark)
        out = []
        for i, seed in enumerate(seeds):
            out.append(GenerationRecord(
                model=self.model_ref, model_sha256=self.loaded.weights_sha256, objective=self.config.objective,
                path=self.config.path, sampler=o.sampler, schedule=o.schedule, steps=o.steps,
                guidance=o.guidance, seed=int(seed), width=self.config.image_size, height=self.config.image_size,
                bf16=o.bf16, device=self.device.type, prompt=prompts[i] if prompts is not None else None,
                negative=negative or None,
                label=None if labels is None or labels[i] is None else int(labels[i]),
                sampler_options=o.extra or None, genimage_version=__version__,
                guidance_interval=list(o.guidance_interval) if o.guidance_interval else None,
                edit=edit.record(i) if edit is not None else None, watermark=mark,
                lora=[dict(entry) for entry in self.loras] or None,
                control=self.control.record(i) if self.control is not None else None,
                runtime=dict(self.runtime) if self.runtime else None,
                noise_mark=dict(self.noise_mark) if self.noise_mark and edit is None else None))
        return out

    @staticmethod
    def save(images: torch.Tensor, records: Sequence[GenerationRecord], paths: Sequence[str | Path]) -> list[Path]:
        """Write each image as PNG with its record embedded."""
        return [save_png(img, p, rec) for img, rec, p in zip(images, records, paths)]


def replay(image_path: str | Path, model: str | Path | None = None,
           device: str | torch.device | None = None, init: str | Path | None = None,
           mask: str | Path | None = None, control: str | Path | None = None,
           style: str | Path | None = None, runtime: str | None = None) -> ReplayResult:
    """Regenerate a genimage PNG from its embedded record and compare pixels.

    Args:
        image_path: A PNG written by genimage.
        model: Use this model instead of the recorded one (its hash is still compared).
        device: Where to regenerate (default: the recorded device type; bit-for-bit
            agreement is expected only there).
        init, mask: For an edited image, the input image (and inpainting mask) it was made
            from; checked against the sha256 in the record.
        control: For an image made with spatial control, its control image (checked likewise).
        style: For a style transfer, the style image (:mod:`genimage.editing.style`).
        runtime: The backbone's CPU runtime (default: the recorded one, ``eager`` where the
            record names none). A non-eager runtime is not bit-exact with eager: a bit-for-bit
            match is expected only with the runtime, version, CPU and thread count it was made with.
    """
    record = read_record(image_path)
    from genimage.editing.superres import is_superres_record, replay_superres
    from genimage.editing.style import is_style_record, replay_style

    if is_style_record(record):  # a deterministic AdaIN transfer
        return replay_style(record, image_path, model, init, style)
    if is_superres_record(record):  # made by a trained upscaler, not by this pipeline's edit path
        return replay_superres(record, image_path, model, device, init)
    pipe = Pipeline.from_pretrained(model or record.model, device=replay_device(record, image_path, device))
    weights_match = pipe.loaded.weights_sha256 == record.model_sha256
    for entry in record.lora or ():  # LoRAs merged in the recorded order and scale
        applied = pipe.apply_lora(entry["path"], entry["scale"]).loras[-1]
        weights_match = weights_match and applied["sha256"] == entry["sha256"]
    if record.control:
        from genimage.editing.control import control_from_record

        pipe.control = control_from_record(record.control, control, pipe.loaded)
    from genimage.runtimes import recorded_runtime

    pipe.use_runtime(runtime or recorded_runtime(record.runtime), bf16=record.bf16)
    pipe.noise_mark = record.noise_mark
    canvas = (record.edit or {}).get("canvas")  # an edit at the input's own size (genimage.editing.canvas)
    if canvas is None and pipe.config.image_size != record.width:
        raise GenimageError(f"the model makes {pipe.config.image_size}px images but the record says {record.width}px")
    options = SamplingOptions(sampler=record.sampler, schedule=record.schedule, steps=record.steps,
                              guidance=record.guidance, bf16=record.bf16, extra=record.sampler_options or {},
                              guidance_interval=tuple(record.guidance_interval) if record.guidance_interval else None)
    labels = [record.label] if record.label is not None else None
    prompts = [record.prompt] if record.prompt is not None else None
    if canvas is not None:
        from genimage.editing.canvas import canvas_from_record, run_canvas_edit

        from genimage.editing.plan import model_factor

        edit = canvas_from_record(record.edit, init, mask, pipe.config.image_size, pipe.config.channels,
                                  grid=model_factor(pipe.config))
        image = run_canvas_edit(pipe, edit, [record.seed], labels, prompts, record.negative, options)[0]
        return compare_with_png(image, image_path, record, weights_match)
    edit = edit_from_record(record, init, mask, pipe.config) if record.edit else None
    image = pipe(seeds=[record.seed], labels=labels, prompts=prompts, negative=record.negative, options=options,
                 edit=edit)[0]
    return compare_with_png(image, image_path, record, weights_match)


def edit_from_record(record: GenerationRecord, init: str | Path | None, mask: str | Path | None,
                     config) -> EditSpec:
    """The :class:`EditSpec` an edited image was made with, rebuilt from its input files and
    checked against the record's sha256 of the input (and mask) pixels."""
    from genimage.editing.spec import build_edit, require_edit_inputs

    info = record.edit or {}
    mode = require_edit_inputs(info, init, mask)
    spec = build_edit(init, config.image_size, config.channels, mask=mask if mode == "inpaint" else None,
                      extend=tuple(info["extend"]) if mode == "outpaint" else None,
                      upscale=int(info["factor"]) if mode == "upscale" else None,
                      strength=float(info.get("strength", 1.0)), resample=int(info.get("resample", 1)))
    rebuilt = spec.record(0)  # the same sha256s the record was written with
    if rebuilt.get("mask_sha256") != info.get("mask_sha256"):
        raise GenimageError(f"{mask} is not the mask this image was made with (sha256 of its pixels differs)")
    if rebuilt["image_sha256"] != info.get("image_sha256"):
        raise GenimageError(f"{init} is not the input this image was made from (sha256 of its pixels differs)")
    return spec
