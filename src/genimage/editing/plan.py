"""The edit plan: how :func:`genimage.generation.generate` turns one batch into a start
state, a wrapped model, a sampling loop and a finished image.

``generate`` knows nothing about edit kinds. For each batch it fills a :class:`BatchContext`
and asks an :class:`EditPlan` for

1. :meth:`EditPlan.start`: the initial state ``x_T`` (pure noise, or the edit's input on the
   path at the first time with the image's own noise: SDEdit, Meng et al. 2022, Sec. 3);
2. :meth:`EditPlan.model`: the denoiser wrapped by every registered wrapper step that applies,
   in ascending ``order`` (guidance, inpainting, super-resolution, ...). A wrapper is an
   ``nn.Module`` ``(x, t, cond) -> Prediction`` with a ``path`` attribute, so every sampler uses
   it unchanged (ARCHITECTURE.md: "CFG, inpainting constraints and ControlNet are wrappers
   around the model, not sampler options");
3. :meth:`EditPlan.sample`: the sampling loop (the sampler itself, or RePaint resampling);
4. :meth:`EditPlan.finish`: what happens to the decoded pixels (kept pixels pasted back).

How to add an edit kind
-----------------------
* Give :class:`~genimage.editing.spec.EditSpec` a field for its inputs (default ``None`` =
  off), check it in ``EditSpec.check`` and record it in ``EditSpec.record`` (so it replays).
* Write its wrapper in its own module (``editing/<kind>.py``), documented with its paper.
* Register a builder there, and add the module to :data:`PLUGIN_MODULES` so it is imported::

      from genimage.editing.plan import register_wrapper

      @register_wrapper("control", order=50)
      def _control(model, ctx):
          if ctx.edit is None or ctx.edit.control is None:
              return None          # not this edit: the model stays as it is
          return ControlDenoiser(model, ctx.edit.control_rows(ctx.sl, ctx.count).to(ctx.device))

  A builder gets the model built so far and the :class:`BatchContext` and returns the
  wrapped model, or ``None`` to leave it. Order: lower = closer to the network. Built-in
  steps: ``windows`` 50 (MultiDiffusion over a canvas larger than the model), ``guidance``
  100 (CFG), ``known_region`` 200 (inpainting / outpainting), ``low_resolution`` 300 (DDNM
  super-resolution). A step that must see the network's own input (ControlNet residuals)
  goes below 100, so guidance evaluates it in both branches.

Nothing else changes: ``generate`` stays as it is.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.paths.conversions import PathCoefficients, noisy
from genimage.registry import Registry

if TYPE_CHECKING:
    from genimage.editing.spec import EditSpec
    from genimage.generation import SamplingOptions
    from genimage.models.config import ModelConfig


@dataclass
class BatchContext:
    """What the wrapper builders of one batch may use.

    Attributes:
        denoiser: The trained model (eval mode).
        config: Its config.
        options: The sampling options.
        edit: The edit, or ``None`` (plain generation).
        autoencoder: The latent model's autoencoder (``LoadedAutoencoder``), or ``None``.
        shape: ``(C, H, W)`` of one sample in the model's space (latents of a latent model).
        device: Where the network runs.
        timesteps: The (edit-truncated) schedule.
        sl: The batch's slice of all images; ``count``: its size.
        generators: One ``torch.Generator`` per image of the batch.
        eps: ``(B, *shape)`` the images' initial noise (watermarked, if so asked), CPU.
        cond, uncond: Conditioning of the batch (on ``device``), or ``None``.
        image, mask: The edit's pixel input ``(B, C, H, W)`` and mask ``(B, 1, H, W)`` (CPU),
            set by :meth:`EditPlan.start` (``None`` without an edit / mask).
        known: The clean edit input in the model's space (``(B, *shape)``, on ``device``).
        control: Spatial control (:class:`~genimage.editing.control.ControlSpec`), or ``None``.
    """

    denoiser: nn.Module
    config: "ModelConfig"
    options: "SamplingOptions"
    edit: "EditSpec | None"
    autoencoder: Any
    shape: tuple[int, ...]
    device: torch.device
    timesteps: torch.Tensor
    sl: slice
    count: int
    generators: list
    eps: torch.Tensor
    cond: dict | None = None
    uncond: dict | None = None
    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    known: torch.Tensor | None = None
    control: Any = None


@dataclass(frozen=True)
class WrapperStep:
    """A registered wrapper builder: ``build(model, ctx) -> wrapped model | None``, applied in
    ascending ``order``."""

    name: str
    order: int
    build: Callable[[nn.Module, BatchContext], nn.Module | None]


#: The wrapper steps by name (see the module docstring).
WRAPPERS: Registry[WrapperStep] = Registry("edit wrapper")

#: Modules that register wrapper steps; imported once, before the first plan is built.
PLUGIN_MODULES: list[str] = ["genimage.editing.windows", "genimage.editing.control"]
_loaded = False


def register_wrapper(name: str, order: int) -> Callable:
    """Decorator: register ``build(model, ctx) -> model | None`` as the wrapper step ``name``."""

    def deco(build: Callable) -> Callable:
        WRAPPERS.register(name)(WrapperStep(name, int(order), build))
        return build

    return deco


def wrapper_steps() -> list[WrapperStep]:
    """Every registered step, in the order they wrap (innermost first)."""
    global _loaded
    if not _loaded:
        for module in PLUGIN_MODULES:
            importlib.import_module(module)
        _loaded = True
    return sorted((WRAPPERS.get(n) for n in WRAPPERS.names()), key=lambda s: (s.order, s.name))


# --- built-in wrapper steps -------------------------------------------------------------


@register_wrapper("guidance", order=100)
def _guidance(model: nn.Module, ctx: BatchContext) -> nn.Module | None:
    """Classifier-free guidance (:class:`~genimage.conditioning.cfg.CFGDenoiser`) of a conditional batch."""
    if ctx.cond is None:
        return None
    from genimage.conditioning.cfg import CFGDenoiser

    return CFGDenoiser(model, ctx.options.guidance, ctx.uncond, interval=ctx.options.guidance_interval)


@register_wrapper("known_region", order=200)
def _known_region(model: nn.Module, ctx: BatchContext) -> nn.Module | None:
    """Inpainting / outpainting: the kept pixels' part of every prediction is the input's."""
    if ctx.edit is None or ctx.mask is None:
        return None
    from genimage.editing.known_region import KnownRegionDenoiser, latent_mask

    size = ctx.shape[-1] if ctx.shape[-1] == ctx.shape[-2] else tuple(ctx.shape[-2:])
    return KnownRegionDenoiser(model, ctx.known, latent_mask(ctx.mask, size).to(ctx.device))


@register_wrapper("low_resolution", order=300)
def _low_resolution(model: nn.Module, ctx: BatchContext) -> nn.Module | None:
    """DDNM super-resolution: predictions whose block means are the low-resolution input."""
    if ctx.edit is None or ctx.edit.low is None:
        return None
    from genimage.editing.known_region import LowResolutionDenoiser

    return LowResolutionDenoiser(model, ctx.edit.low_rows(ctx.sl, ctx.count).to(ctx.device), ctx.edit.factor)


# --- the plan ---------------------------------------------------------------------------


class EditPlan:
    """What ``generate`` does differently for an edit (``edit=None``: plain generation).

    Args:
        edit: The edit, or ``None``.
        config: The model's config.
    """

    def __init__(self, edit: "EditSpec | None", config: "ModelConfig") -> None:
        self.edit = edit
        self.config = config

    def check(self, n: int) -> None:
        """Raise a clear error unless the edit fits ``n`` images of the model."""
        if self.edit is None:
            return
        self.edit.check(n, self.config.channels, self.config.image_size)
        if self.edit.window_overlap is not None:
            f = model_factor(self.config)
            h, w = self.edit.image.shape[-2:]
            if h % f or w % f:
                raise GenimageError(f"a {w}x{h} canvas does not fit the latent grid: its sides must be multiples of "
                                    f"the autoencoder's factor {f}")
        if self.edit.low is not None and self.config.autoencoder:
            raise GenimageError("upscaling needs a pixel-space model (its output must average back to the input "
                                "pixel for pixel); for a latent model, run img2img on the upsampled image "
                                "(genimage edit --strength 0.4)")

    def timesteps(self, timesteps: torch.Tensor, steps: int) -> torch.Tensor:
        """The part of the schedule that runs (the last ``strength`` of it for an edit)."""
        if self.edit is None:
            return timesteps
        return timesteps[-(self.edit.steps_to_run(steps) + 1):]

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, H, W)`` of one sample in the model's space; ``shape`` is the model's own
        (an edit on a canvas larger than the model scales its height and width)."""
        if self.edit is None or self.edit.window_overlap is None:
            return tuple(shape)
        f = self.config.image_size // shape[-1]
        h, w = self.edit.image.shape[-2:]
        return (shape[0], h // f, w // f)

    @property
    def canvas(self) -> bool:
        """Whether the edit paints a canvas larger than the model (by windows)."""
        return self.edit is not None and self.edit.window_overlap is not None

    def decode(self, autoencoder, latents: torch.Tensor) -> torch.Tensor:
        """Pixels of a latent model's samples, one image at a time (a canvas at its own size)."""
        from genimage.latent.autoencoder import decode_latents

        if not self.canvas:
            return decode_latents(autoencoder, latents)
        model = autoencoder.model.to(latents.device)
        return torch.cat([_any_size(model.decode, z[None].float()).float() for z in latents])

    def start(self, ctx: BatchContext) -> torch.Tensor:
        """The initial state ``x`` of the batch (sets ``ctx.image``, ``ctx.mask``, ``ctx.known``)."""
        c0 = PathCoefficients.at(ctx.denoiser.path, ctx.timesteps[0], ndim=1)
        x = (float(c0.sigma) * ctx.eps).float().to(ctx.device)
        if self.edit is None:
            return x
        # the input on the path at the start time, with the image's own noise
        ctx.image, ctx.mask, ctx.known = _edit_start(self.edit, ctx.sl, ctx.count, ctx.autoencoder, ctx.shape,
                                                     ctx.device, self.canvas)
        return noisy(ctx.known, ctx.eps.float().to(ctx.device), PathCoefficients.at(ctx.denoiser.path,
                                                                                     ctx.timesteps[0], x.ndim))

    def model(self, ctx: BatchContext) -> nn.Module:
        """``ctx.denoiser`` wrapped by every wrapper step that applies (innermost first)."""
        model = ctx.denoiser
        for step in wrapper_steps():
            wrapped = step.build(model, ctx)
            if wrapped is not None:
                model = wrapped
        return model

    def sample(self, sampler: Callable, model: nn.Module, x: torch.Tensor, ctx: BatchContext,
               callback: Callable | None) -> torch.Tensor:
        """Run the sampling loop: ``sampler`` over ``ctx.timesteps``, or RePaint resampling."""
        if self.edit is not None and self.edit.resample > 1:
            from genimage.editing.resample import resampled

            return resampled(sampler, model, x, ctx.timesteps, resample=self.edit.resample, cond=ctx.cond,
                             generator=ctx.generators, callback=callback, **ctx.options.extra)
        return sampler(model, x, ctx.timesteps, cond=ctx.cond, generator=ctx.generators, callback=callback,
                       **ctx.options.extra)

    def finish(self, x: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        """The batch's images ``(B, C, H, W)`` (CPU, clamped) with the kept pixels exactly as
        given (a latent model's decoder blurs them)."""
        if self.edit is not None and ctx.mask is not None:
            x = torch.where(ctx.mask.bool(), x, ctx.image)
        return x


def model_factor(config: "ModelConfig") -> int:
    """Pixels per model-space cell: the latent downsampling factor (1 for a pixel model)."""
    if config.autoencoder and config.latent_shape:
        return int(config.image_size) // int(config.latent_shape[-1])
    return 1


def _any_size(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """``fn(x, any_size=True)`` where the autoencoder takes it (genimage's own), else ``fn(x)``
    (a convolutional autoencoder without size checks, e.g. an imported Stable Diffusion VAE)."""
    import inspect

    if "any_size" in inspect.signature(fn).parameters:
        return fn(x, any_size=True)
    return fn(x)


def _edit_start(edit: "EditSpec", sl: slice, count: int, autoencoder, shape, device: torch.device,
                canvas: bool = False):
    """``(image, mask, known)`` of a batch slice: the pixel input and mask (CPU), and the
    clean starting point in the model's space (latents of a latent model: the encoder's
    posterior mean, one image at a time like decoding)."""
    image, mask = edit.rows(sl, count)
    image = image.float().cpu()
    mask = None if mask is None else mask.float().cpu()
    if autoencoder is None:
        return image, mask, image.to(device)
    ae = autoencoder.model.to(device)
    if canvas:
        known = torch.cat([_any_size(ae.encode, im[None].to(device)).float() for im in image])
    else:
        known = torch.cat([ae.encode(im[None].to(device)).float() for im in image])
    if tuple(known.shape[1:]) != tuple(shape):
        raise GenimageError(f"the autoencoder gives latents {tuple(known.shape[1:])}, the model expects {tuple(shape)}")
    return image, mask, known
