"""What the web service does, without the web: the models it serves, requests checked and
turned into :class:`Work` before any compute, and PNGs that carry their generation records.

:class:`Studio` serves only the models of its own list (the bundled diffusion / flow models
plus the folders the operator names), so no request can point it at a file-system path. It
keeps the last few pipelines it loaded (loading the shapes model takes about a second).
:meth:`Studio.prepare` validates a request completely (model, conditioning, sampler names,
limits, uploaded images decoded under a pixel cap and a concurrency bound) and returns a
:class:`Work`; :meth:`Work.run` does the sampling, calling back after every step (progress,
cancellation, the per-job caps). The job queue (:mod:`genimage.serve.jobs`) runs one
:class:`Work` at a time. Every image comes back as the PNG ``genimage sample`` would have
written, so ``genimage replay`` works on downloads from the service.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import re
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from genimage.errors import GenimageError
from genimage.serve.limits import Limits

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PROMPT_CACHE_KEEP = 512  # encoded prompts a text model keeps between jobs


class Stop(Exception):
    """Raised from the step callback to end a job between steps.

    Args:
        state: ``"cancelled"`` or ``"failed"``.
        reason: Why, in the web's words.
    """

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@dataclass
class Made:
    """One generated image: its seed, PNG bytes (record embedded) and record."""

    seed: int
    png: bytes
    record: dict[str, Any]
    match: bool | None = None  # replays: whether the regenerated pixels equal the given PNG's

    def to_json(self) -> dict[str, Any]:
        out = {"seed": self.seed, "png_base64": base64.b64encode(self.png).decode("ascii"), "record": self.record}
        if self.match is not None:
            out["match"] = self.match
        return out


@dataclass
class Work:
    """A checked request, ready to run: everything :meth:`run` needs and nothing to validate.

    Attributes:
        kind: ``generate``, ``edit`` or ``replay``.
        model: The model's name in the service's list.
        pipe: Its loaded :class:`~genimage.pipeline.Pipeline`.
        seeds, labels, prompts, negative, options, edit: What to sample.
        steps: Sampler callbacks the job makes (for progress).
        nfe: Estimated network evaluations.
        expect: For a replay, the given PNG's pixels ``(C, H, W)`` uint8 to compare with.
        warnings: Notes for the client (e.g. a prompt longer than the text encoder reads).
    """

    kind: str
    model: str
    pipe: Any
    seeds: list[int]
    labels: list | None
    prompts: list | None
    negative: str | None
    options: Any
    edit: Any = None
    steps: int = 1
    nfe: int = 1
    expect: torch.Tensor | None = None
    warnings: list[str] = field(default_factory=list)
    upscaler: Any = None  # a trained superres model (editing.superres) that runs this upscale instead of pipe

    def run(self, callback: Callable[[dict], None] | None = None) -> list[Made]:
        """Sample; ``callback`` is called after every step and may raise :class:`Stop`."""
        from genimage.editing.canvas import CanvasEdit, canvas_records, run_canvas_edit
        from genimage.provenance.record import png_bytes

        if self.upscaler is not None:
            images, records = self._run_upscaler(callback)
        else:
            self._note_truncation()
            canvas = isinstance(self.edit, CanvasEdit)  # an upload of any size: the CLI's canvas (windows, tiles)
            args = (self.pipe, self.edit, self.seeds, self.labels, self.prompts, self.negative, self.options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the truncation warning reaches the client via self.warnings
                images = run_canvas_edit(*args, callback=callback) if canvas else self.pipe(
                    self.seeds, labels=self.labels, prompts=self.prompts, negative=self.negative,
                    options=self.options, edit=self.edit, callback=callback)
            records = canvas_records(*args) if canvas else self.pipe.records(
                self.seeds, self.labels, self.prompts, self.negative, self.options, edit=self.edit)
        made = [Made(s, png_bytes(img, rec), _record_dict(rec)) for s, img, rec in zip(self.seeds, images, records)]
        if self.expect is not None:
            from genimage.provenance.record import png_pixels
            from genimage.provenance.watermark import apply_entry

            new = png_pixels(apply_entry(images[0], records[0].watermark))
            made[0].match = bool(new.shape == self.expect.shape and torch.equal(new, self.expect))
        _trim_prompt_cache(self.pipe)
        return made

    def _run_upscaler(self, callback):
        """The upscale tile by tile with :attr:`upscaler` (``self.options`` is its
        :class:`~genimage.editing.superres.UpscaleOptions`); records as ``genimage edit --upscale`` writes."""
        from genimage.editing.superres import model_ref, run_upscale, upscale_records

        images = run_upscale(self.upscaler, self.edit, self.seeds, self.options, callback=callback)
        records = upscale_records(self.upscaler, model_ref(self.upscaler), self.edit, self.seeds, self.options,
                                  watermark=bool(self.pipe.watermark))
        return images, records


    def _note_truncation(self) -> None:
        """Warn the client of text the model's encoder cuts off (run on the worker thread,
        the only one that uses the tokenizer)."""
        if not self.pipe.conditioner.uses_text:
            return
        encoder = self.pipe.conditioner.text_encoder
        for name, text in (("prompt", (self.prompts or [""])[0]), ("negative", self.negative)):
            if text:
                tokens = len(encoder.tokenizer([text], truncation=False)["input_ids"][0])
                if tokens > encoder.max_length:
                    self.warnings.append(f"{name}: {tokens} tokens, but the model reads only the first "
                                         f"{encoder.max_length}; the rest was ignored")


def _trim_prompt_cache(pipe) -> None:
    """Bound a text model's prompt-embedding cache between jobs (it keeps every prompt)."""
    encoder = getattr(pipe.conditioner, "_text_encoder", None)
    cache = getattr(encoder, "_cache", None)
    if cache is not None and len(cache) > PROMPT_CACHE_KEEP:
        encoder.clear_cache()


def _evals_per_step(sampler: str) -> int:
    return 2 if sampler == "heun" else 1


class Studio:
    """Generation and editing for the service.

    Args:
        default_model: Model used when a request names none (a name from the list).
        device: ``auto`` / ``cpu`` / ``cuda`` / ...: where the models run.
        max_images: Most images one request may ask for (overrides ``limits.max_images``).
        cache_size: Pipelines kept loaded.
        watermark: Mark the PNGs invisibly where they are large enough
            (:mod:`genimage.provenance.watermark`).
        model_dirs: Extra models the operator serves, ``{name: folder}`` (a model folder or a
            training run folder); requests name them by ``name`` only.
        limits: The request and job bounds (:class:`~genimage.serve.limits.Limits`).
    """

    def __init__(self, default_model: str = "shapes", device: str = "auto", max_images: int | None = None,
                 cache_size: int = 3, watermark: bool = True, *, model_dirs: dict[str, str | Path] | None = None,
                 limits: Limits | None = None) -> None:
        from genimage.utils.device import resolve_device

        limits = limits or Limits()
        self.limits = limits if max_images is None else dataclasses.replace(limits, max_images=max_images)
        self.device = resolve_device(device)
        self.cache_size = cache_size
        self.watermark = watermark
        self.catalog = self._catalog(model_dirs or {})
        if default_model not in self.catalog:
            raise GenimageError(f"model {default_model!r} is not one this service serves: choose one of "
                                f"{', '.join(self.catalog)} or add it with --model-dir NAME=FOLDER")
        self.default_model = default_model
        self._pipes: OrderedDict[str, Any] = OrderedDict()
        self._upscalers: dict[str, Any] = {}  # trained superres models, by bundled name
        self._lock = threading.RLock()  # the pipeline and upscaler caches
        self._decode = threading.BoundedSemaphore(self.limits.decode_concurrency)

    @property
    def max_images(self) -> int:
        return self.limits.max_images

    # ----------------------------------------------------------------------------- models
    @staticmethod
    def _catalog(model_dirs: dict[str, str | Path]) -> dict[str, Path]:
        """``{name: model folder}``: the bundled diffusion / flow models, then the operator's."""
        from genimage.families.records import is_direct
        from genimage.models.config import ModelConfig
        from genimage.models.io import BUNDLED_DIR, bundled_models, resolve_model_folder

        out: dict[str, Path] = {}
        for name in bundled_models():
            family = ModelConfig.load(BUNDLED_DIR / name).family
            if not is_direct(family) and family != "superres":  # an upscaler is no generator (editing.superres)
                out[name] = BUNDLED_DIR / name
        for name, folder in model_dirs.items():
            if not MODEL_NAME.match(name):
                raise GenimageError(f"--model-dir NAME must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
            if name in out:
                raise GenimageError(f"--model-dir {name}=...: {name} is already a served model; pick another name")
            resolved = resolve_model_folder(Path(folder).expanduser().resolve())
            family = ModelConfig.load(resolved).family
            if is_direct(family):
                raise GenimageError(f"--model-dir {name}: the service runs diffusion and flow models; this is a "
                                    f"{family} model")
            out[name] = resolved
        return out

    def pipeline(self, model: str | None, *, startup: bool = False):
        """The loaded pipeline of ``model`` (a name from the list; least recently used ones
        are dropped).

        Args:
            model (str | None): A served model's name; ``None``: the default model.
            startup (bool): Called by the operator (``genimage serve`` before it listens):
                a model that cannot be loaded raises the loader's own message. Otherwise
                (default, a request) the client gets a message without the server's paths,
                and the loader's message goes to the server's log.
        """
        from genimage.pipeline import Pipeline

        name = self.default_model if model is None else model
        if name not in self.catalog:
            raise GenimageError(f"unknown model {name[:64]!r}: this service serves {', '.join(self.catalog)} "
                                "(GET /api/models describes them)")
        with self._lock:
            if name not in self._pipes:
                try:
                    self._pipes[name] = Pipeline.from_pretrained(self.catalog[name], device=self.device)
                except GenimageError as exc:
                    if startup:
                        raise
                    logging.getLogger("genimage.serve").warning("model %s cannot be loaded: %s", name, exc)
                    raise GenimageError(f"model {name!r} cannot be loaded: the service refused its files or they are "
                                        "damaged (the server's log says why)") from None
                while len(self._pipes) > self.cache_size:
                    self._pipes.popitem(last=False)
            self._pipes.move_to_end(name)
            pipe = self._pipes[name]
        pipe.watermark = self.watermark
        return pipe

    def upscaler_for(self, pipe, upscale: int | None) -> str | None:
        """The bundled upscaler that runs ``upscale`` for ``pipe``'s model, as ``genimage edit
        --upscale`` chooses it: ``None`` (DDNM with the model itself) for a pixel-space model; the
        bundled ``photos-x4`` for a latent model, which DDNM cannot run."""
        if not upscale or not pipe.config.autoencoder:
            return None
        from genimage.editing.superres import BUNDLED_UPSCALER, bundled_upscaler

        name = bundled_upscaler(int(upscale))
        if name is None:
            raise GenimageError(f"upscale {upscale}: this model works in latent space, so it cannot upscale by "
                                f"itself (DDNM needs a pixel-space model), and the bundled upscaler "
                                f"{BUNDLED_UPSCALER} upscales x4 only: send upscale 4")
        return name

    def upscaler(self, name: str):
        """The loaded bundled upscaler ``name`` (kept once loaded)."""
        from genimage.editing.superres import load_upscaler

        with self._lock:
            if name not in self._upscalers:
                self._upscalers[name] = load_upscaler(name, self.device)
            return self._upscalers[name]

    def _check_job_size(self, seed: int, n: int, steps: int) -> None:
        """The bounds every job keeps: images per request, the seed range, sampler steps."""
        lim = self.limits
        if not 1 <= n <= lim.max_images:
            raise GenimageError(f"n must be between 1 and {lim.max_images} (this service's limit), got {n}")
        if seed + n - 1 > 2**63 - 1:
            raise GenimageError("seed: seed + n - 1 must stay below 2^63")
        if steps > lim.max_steps:
            raise GenimageError(f"steps: at most {lim.max_steps} on this service, got {steps}")

    def _upscale_work(self, kind: str, pipe, name: str, loaded, canvas, *, seed: int, n: int, steps: int | None,
                      sampler: str | None, schedule: str | None, consistent: bool | None = None,
                      expect=None) -> Work:
        """The :class:`Work` of an upscale by the loaded upscaler ``name`` over ``canvas``'s tiles,
        bounded like every job (images, steps, network evaluations)."""
        from genimage.editing.superres import UpscaleOptions

        lim = self.limits
        options = UpscaleOptions.defaults(loaded.config, steps, sampler, schedule, consistent)
        self._check_job_size(seed, n, options.steps)
        run = max(canvas.spec.steps_to_run(options.steps), 1)
        nfe = run * _evals_per_step(options.sampler) * canvas.rows * n
        if nfe > lim.max_nfe:
            raise GenimageError(f"steps x {canvas.rows} tiles of the upscaler {name} needs about {nfe} network "
                                f"evaluations; this service allows {lim.max_nfe} per job: lower steps or n, or send "
                                "a smaller image")
        batches = -(-canvas.rows // 64)  # editing.superres.run_upscale's default tile batch
        return Work(kind, name, pipe, list(range(seed, seed + n)), None, None, None, options, canvas,
                    steps=run * batches * n, nfe=nfe, expect=expect, upscaler=loaded)

    def _prepare_upscale(self, pipe, name: str, *, image: bytes, upscale: int, seed: int, n: int, steps, sampler,
                         schedule, strength, given: dict[str, Any]) -> Work:
        """An upload upscaled by the bundled upscaler ``name`` (see :meth:`upscaler_for`)."""
        from genimage.editing.superres import upscale_canvas

        extra = [k for k, v in given.items() if v not in (None, "")]
        if extra:
            raise GenimageError(f"{', '.join(extra)}: not used by an upscale with {name} (a trained upscaler "
                                f"conditioned on the image only); leave {'it' if len(extra) == 1 else 'them'} out")
        self.image_size(image, "image")
        loaded = self.upscaler(name)
        with self._decode:
            canvas = upscale_canvas(image, loaded, int(upscale), name=name, strength=strength)
        return self._upscale_work("edit", pipe, name, loaded, canvas, seed=seed, n=n, steps=steps, sampler=sampler,
                                  schedule=schedule)

    def model_for_record(self, ref: str) -> str:
        """The served model a generation record's ``model`` names, or a 400 saying it is not served."""
        if ref in self.catalog:
            return ref
        for name, folder in self.catalog.items():
            if str(folder) == ref:
                return name
        raise GenimageError(f"this PNG was made with a model this service does not serve; it serves "
                            f"{', '.join(self.catalog)}")

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
        """The served models, described (without loading their weights)."""
        from genimage.models.config import ModelConfig

        return [{"name": name, "default": name == self.default_model, **self.describe(ModelConfig.load(folder))}
                for name, folder in self.catalog.items()]

    # ----------------------------------------------------------------------------- checks
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
            try:
                return [parse_label(pipe.config, label)] * n, None
            except GenimageError:
                classes = " ".join(pipe.config.class_names or [str(i) for i in range(pipe.config.num_classes)])
                raise GenimageError(f"label: the given label is not a class of this model; give a class "
                                    f"name or number ({classes})") from None
        if prompt or label is not None:
            raise GenimageError("this model is unconditional: send neither a prompt nor a label")
        return None, None

    def _check_text(self, **texts: str | int | None) -> None:
        cap = self.limits.max_prompt_chars
        for name, text in texts.items():
            if isinstance(text, str) and len(text) > cap:
                raise GenimageError(f"{name}: at most {cap} characters (got {len(text)})")

    def image_size(self, data: bytes, what: str) -> tuple[int, int]:
        """Width and height of an uploaded image from its header (nothing decoded), checked
        against the pixel cap."""
        from PIL import Image

        if not data:
            raise GenimageError(f"{what}: the upload is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as im:
                    w, h = im.size
        except Image.DecompressionBombError:  # PIL's own cap (over 2 x its MAX_IMAGE_PIXELS), read from the header
            raise GenimageError(f"{what}: its header declares more pixels than PIL opens; this service accepts at "
                                f"most {self.limits.max_pixels} pixels per image") from None
        except Exception:  # noqa: BLE001 - any failure to read a header means "not an image"
            raise GenimageError(f"{what}: cannot read the upload as an image (PNG, JPEG, WebP, ...)") from None
        if w * h > self.limits.max_pixels:
            raise GenimageError(f"{what}: {w}x{h} is {w * h} pixels; this service accepts at most "
                                f"{self.limits.max_pixels} pixels per image")
        return w, h

    def _edit_spec(self, pipe, image: bytes, mask: bytes | None, extend: str | None, strength: float | None,
                   resample: int, upscale: int | None):
        from genimage.editing.canvas import build_canvas_edit
        from genimage.editing.plan import model_factor
        from genimage.editing.spec import parse_extend

        size = self.image_size(image, "image")
        if mask is not None and self.image_size(mask, "mask") != size:
            raise GenimageError(f"mask: it must be the size of the image ({size[0]}x{size[1]}): draw the mask over "
                                "the image itself")
        cfg = pipe.config
        border = parse_extend(extend) if extend else None
        with self._decode:  # decoding is bounded in concurrency (and, by the pixel cap, in memory)
            # the CLI's canvas: the result keeps the upload's size (img2img, inpainting), outpainting
            # paints the enlarged canvas by model-size windows, upscaling goes tile by tile
            return build_canvas_edit(image, cfg.image_size, cfg.channels, mask=mask, extend=border,
                                     upscale=upscale or None, strength=strength, resample=resample,
                                     grid=model_factor(cfg))

    def _work(self, kind: str, pipe, model: str, *, seed: int, n: int, labels, prompts, negative, options,
              edit=None, expect=None) -> Work:
        lim = self.limits
        self._check_job_size(seed, n, options.steps)
        from genimage.editing.canvas import CanvasEdit

        spec = edit.spec if isinstance(edit, CanvasEdit) else edit
        resample = spec.resample if spec is not None else 1
        if resample > lim.max_resample:
            raise GenimageError(f"resample: at most {lim.max_resample} on this service, got {resample}")
        steps = spec.steps_to_run(options.steps) if spec is not None else options.steps
        units = 1
        if isinstance(edit, CanvasEdit):
            from genimage.editing.plan import model_factor
            from genimage.generation import check_edit

            check_edit(edit.batch_spec(n), n * edit.rows, pipe.config)
            units = edit.network_images(model_factor(pipe.config))
        elif edit is not None:
            edit.check(n, pipe.config.channels, pipe.config.image_size)
        nfe = steps * resample * _evals_per_step(options.sampler) * units
        if nfe > lim.max_nfe:
            what = f" over {units} model-size windows/tiles" if units > 1 else ""
            raise GenimageError(f"steps x resample{what} needs about {nfe} network evaluations; this service "
                                f"allows {lim.max_nfe} per job: lower steps or resample" +
                                (", or send a smaller image" if units > 1 else ""))
        return Work(kind, model, pipe, list(range(seed, seed + n)), labels, prompts, negative, options, edit,
                    steps=max(steps, 1), nfe=nfe, expect=expect)

    # ----------------------------------------------------------------------------- requests
    def prepare(self, *, model: str | None = None, prompt: str | None = None, label: str | int | None = None,
                negative: str | None = None, seed: int = 0, n: int = 1, sampler: str | None = None,
                schedule: str | None = None, steps: int | None = None, guidance: float | None = None,
                image: bytes | None = None, mask: bytes | None = None, extend: str | None = None,
                strength: float | None = None, resample: int = 1, upscale: int | None = None) -> Work:
        """Check a generation (or, with ``image``, an edit) of ``n`` images with seeds
        ``seed .. seed + n - 1`` and return its :class:`Work`; raises
        :class:`~genimage.errors.GenimageError` (a 400) for anything wrong, before any compute."""
        self._check_text(prompt=prompt, negative=negative, label=label)
        self._check_job_size(seed, n, steps or 0)  # before a model loads; again once the steps are resolved
        name = self.default_model if model is None else model
        pipe = self.pipeline(name)
        if image is not None and (upscaler := self.upscaler_for(pipe, upscale)):
            return self._prepare_upscale(pipe, upscaler, image=image, upscale=int(upscale), seed=seed, n=n,
                                         steps=steps, sampler=sampler, schedule=schedule, strength=strength,
                                         given={"prompt": prompt, "label": label, "negative": negative,
                                                "guidance": guidance, "mask": mask, "extend": extend,
                                                "resample": resample if resample != 1 else None})
        options = pipe.options(sampler=sampler, schedule=schedule, steps=steps, guidance=guidance)
        edit = None
        if image is not None:
            edit = self._edit_spec(pipe, image, mask, extend, strength, resample, upscale)
        elif mask is not None or extend or upscale or strength is not None or resample != 1:
            raise GenimageError("mask, extend, upscale, strength and resample need an image to edit")
        labels, prompts = self._conditions(pipe, n, prompt, label, edit is not None)
        return self._work("edit" if edit is not None else "generate", pipe, name, seed=seed, n=n, labels=labels,
                          prompts=prompts, negative=negative, options=options, edit=edit)

    def prepare_replay(self, png: bytes, image: bytes | None = None, mask: bytes | None = None) -> Work:
        """The :class:`Work` that regenerates a genimage PNG from the record it carries (only
        with a served model; an edit needs its input ``image``, an inpainting also its
        ``mask``); its result says whether the pixels match."""
        from PIL import Image

        from genimage.generation import SamplingOptions
        from genimage.provenance.record import PNG_KEY, GenerationRecord, pil_pixels

        self.image_size(png, "png")
        try:
            with Image.open(io.BytesIO(png)) as im:
                text = im.text.get(PNG_KEY) if hasattr(im, "text") else None
                expect = pil_pixels(im)
        except Exception:  # noqa: BLE001
            raise GenimageError("png: cannot read the upload as a PNG image") from None
        if not text:
            raise GenimageError("png: this image carries no genimage record (was it made by genimage and kept as PNG?)")
        try:
            record = GenerationRecord.from_json(text)
        except Exception:  # noqa: BLE001
            raise GenimageError("png: its generation record is damaged") from None
        from genimage.editing.superres import is_superres_record

        if is_superres_record(record):
            return self._replay_upscale(record, image, expect)
        name = self.model_for_record(str(record.model))
        pipe = self.pipeline(name)
        if "canvas" not in (record.edit or {}) and pipe.config.image_size != record.width:
            raise GenimageError("png: its record's size does not match the served model of that name")
        try:
            options = SamplingOptions(sampler=record.sampler, schedule=record.schedule, steps=record.steps,
                                      guidance=record.guidance, bf16=record.bf16, extra=record.sampler_options or {},
                                      guidance_interval=tuple(record.guidance_interval) if record.guidance_interval
                                      else None)
            options.validate()
        except (GenimageError, TypeError, ValueError):
            raise GenimageError("png: its record's sampling settings are not valid here") from None
        edit = None
        if record.edit:
            info = record.edit
            mode = info.get("mode", "img2img")
            if image is None or (mode == "inpaint" and mask is None):
                need = "image and mask" if mode == "inpaint" else "image"
                raise GenimageError(f"this PNG is an edit ({mode}): send the {need} it was made from as well")
            self.image_size(image, "image")
            if "canvas" in info:  # made on the canvas (any upload size): rebuilt and checked as the CLI does
                edit = self._replay_canvas(pipe, info, image, mask)
            else:
                edit = self._replay_edit(pipe, info, mode, image, mask)
        labels = [record.label] if record.label is not None else None
        prompts = [record.prompt] if record.prompt is not None else None
        self._check_text(prompt=record.prompt, negative=record.negative)
        if pipe.conditioner.uses_text and prompts is None:
            prompts = [""]
        return self._work("replay", pipe, name, seed=int(record.seed), n=1, labels=labels, prompts=prompts,
                          negative=record.negative, options=options, edit=edit, expect=expect)

    def _replay_upscale(self, record, image: bytes | None, expect) -> Work:
        """The :class:`Work` that re-runs an upscale by a bundled upscaler from its record and input."""
        from genimage.editing.canvas import canvas_from_record
        from genimage.editing.superres import BUNDLED_UPSCALER

        name = str(record.model)
        if name != BUNDLED_UPSCALER:
            raise GenimageError(f"this PNG was upscaled by a model this service does not run; it runs the bundled "
                                f"upscaler {BUNDLED_UPSCALER}")
        if image is None:
            raise GenimageError("this PNG is an edit (upscale): send the image it was made from as well")
        self.image_size(image, "image")
        loaded = self.upscaler(name)
        if loaded.weights_sha256 != record.model_sha256:
            raise GenimageError(f"png: it was made by other weights of {name} than this service's")
        try:
            consistent = bool(record.edit["consistent"])
        except (KeyError, TypeError):
            raise GenimageError("png: its generation record is damaged") from None
        with self._decode:
            canvas = canvas_from_record(record.edit, image, None, loaded.config.image_size, loaded.config.channels)
        return self._upscale_work("replay", self.pipeline(None), name, loaded, canvas, seed=int(record.seed), n=1,
                                  steps=int(record.steps), sampler=record.sampler, schedule=record.schedule,
                                  consistent=consistent, expect=expect)

    def _replay_canvas(self, pipe, info: dict, image: bytes, mask: bytes | None):
        from genimage.editing.canvas import canvas_from_record
        from genimage.editing.plan import model_factor

        with self._decode:
            return canvas_from_record(info, image, mask, pipe.config.image_size, pipe.config.channels,
                                      grid=model_factor(pipe.config))

    def _replay_edit(self, pipe, info: dict, mode: str, image: bytes, mask: bytes | None):
        """An edit recorded before the canvas (model-size input), rebuilt and checked."""
        from genimage.editing.spec import build_edit

        with self._decode:
            edit = build_edit(image, pipe.config.image_size, pipe.config.channels,
                              mask=mask if mode == "inpaint" else None,
                              extend=tuple(info["extend"]) if mode == "outpaint" else None,
                              upscale=int(info["factor"]) if mode == "upscale" else None,
                              strength=float(info.get("strength", 1.0)), resample=int(info.get("resample", 1)))
        rebuilt = edit.record(0)
        if rebuilt.get("mask_sha256") != info.get("mask_sha256"):
            raise GenimageError("mask: not the mask this PNG was made with (the sha256 of its pixels differs)")
        if rebuilt["image_sha256"] != info.get("image_sha256"):
            raise GenimageError("image: not the input this PNG was made from (the sha256 of its pixels differs)")
        return edit

    def detect(self, image: bytes) -> dict[str, Any]:
        """What ``genimage detect`` says of an uploaded image: its record (if any), the
        invisible marks, whether its signed manifest verifies (against the server's trusted
        keys) and the learned detector's p(generated)."""
        import tempfile

        from genimage.provenance.inspect import inspect_file

        self.image_size(image, "image")
        with self._decode, tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(image)
            try:
                out = inspect_file(path)
            except GenimageError:
                raise GenimageError("image: cannot read the upload as an image") from None
        out.pop("image", None)
        return out

    def run(self, **request) -> tuple[list[Made], float]:
        """Check and run a request at once (no queue); returns the images and the seconds
        spent sampling. The service itself goes through the job queue."""
        work = self.prepare(**request)
        t0 = time.perf_counter()
        made = work.run()
        return made, time.perf_counter() - t0


def _record_dict(record) -> dict[str, Any]:
    import json

    return json.loads(record.to_json())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
