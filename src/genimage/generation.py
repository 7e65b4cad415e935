"""Generate images from a denoiser: seeds -> noise -> sampler -> images.

Image *i* depends only on ``seeds[i]`` (its own ``torch.Generator`` draws its initial noise
and every later random draw), on its label/prompt and on the sampling settings.

A latent model (``config.autoencoder`` set; Rombach et al. 2022) samples latents of
``config.latent_shape`` and decodes them with its autoencoder, one image at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from genimage.conditioning.conditioner import Conditioner
from genimage.errors import GenimageError
from genimage.models.config import ModelConfig
from genimage.models.denoiser import Denoiser
from genimage.samplers import SAMPLERS, make_schedule
from genimage.samplers.noise import generators_for_seeds, randn
from genimage.utils.finite import check_generated

if TYPE_CHECKING:
    from genimage.editing.control import ControlSpec
    from genimage.editing.spec import EditSpec


@dataclass
class SamplingOptions:
    """Args:
        sampler: Sampler name (``euler``, ``heun``, ``ddim``, ``dpmpp_2m``, ``ddpm``).
        schedule: Timestep schedule (``uniform`` or ``karras``).
        steps: Number of sampler steps.
        guidance: Classifier-free guidance weight (1 = off).
        bf16: Evaluate the network under bfloat16 autocast (default: auto, see
            :mod:`genimage.utils.precision`).
        extra: Extra sampler keyword arguments (e.g. ``{"eta": 0.5}`` for DDIM).
        guidance_interval: ``(lo, hi)``: apply guidance only at path times ``lo <= t <= hi``
            (Kynkäänniemi et al. 2024); the conditional prediction alone elsewhere, one network
            evaluation instead of two. ``None``: guide at every step.
    """

    sampler: str
    schedule: str
    steps: int
    guidance: float
    bf16: bool = False
    extra: dict = field(default_factory=dict)
    guidance_interval: tuple[float, float] | None = None

    @classmethod
    def defaults(cls, config: ModelConfig, **overrides) -> "SamplingOptions":
        from genimage.utils.precision import bf16_is_fast

        base = dict(sampler=config.sampler, schedule=config.schedule, steps=config.steps, guidance=config.guidance,
                    bf16=bf16_is_fast(),
                    guidance_interval=tuple(config.guidance_interval) if config.guidance_interval else None)
        base.update({k: v for k, v in overrides.items() if v is not None})
        opts = cls(**base)
        opts.validate()
        return opts

    def validate(self) -> None:
        SAMPLERS.get(self.sampler)
        from genimage.samplers.timesteps import SCHEDULES

        SCHEDULES.get(self.schedule)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise GenimageError(f"--steps must be a positive integer, got {self.steps}")
        if not (self.guidance == self.guidance) or self.guidance < 0:
            raise GenimageError(f"--guidance must be a number >= 0, got {self.guidance}")
        if self.guidance_interval is not None:
            self.guidance_interval = check_guidance_interval(self.guidance_interval)


def check_guidance_interval(interval) -> tuple[float, float]:
    """``(lo, hi)`` as floats with ``0 <= lo < hi <= 1``, else a :class:`GenimageError`."""
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise GenimageError(f"a guidance interval is two numbers LO,HI (path times in [0, 1]), got {interval!r}") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise GenimageError(f"the guidance interval needs 0 <= LO < HI <= 1 (path times), got {lo},{hi}")
    return lo, hi


@torch.no_grad()
def generate(denoiser: Denoiser, config: ModelConfig, conditioner: Conditioner, *, seeds: Sequence[int] | None = None,
             labels: Sequence[int | None] | None = None, prompts: Sequence[str] | None = None,
             negative: str | None = None, options: SamplingOptions | None = None, bf16: bool | None = None,
             batch_size: int = 64, callback: Callable[[dict], None] | None = None,
             generators: Sequence[torch.Generator] | None = None, edit: "EditSpec | None" = None,
             noise_mark: dict | None = None, control: "ControlSpec | None" = None) -> torch.Tensor:
    """Generate one image per seed.

    Args:
        denoiser: The trained model (eval mode).
        config: Its config (image geometry, defaults).
        conditioner: Builds conditioning from labels/prompts.
        seeds: One seed per image.
        generators: Instead of ``seeds``, one ``torch.Generator`` per image (used as is).
        labels: One class label per image (class-conditional models).
        prompts: One prompt per image (text-conditional models).
        negative: Negative prompt used in place of the empty prompt for guidance.
        options: Sampling options (defaults from ``config``).
        bf16: Override ``options.bf16``.
        batch_size: Images per network batch (results do not depend on it).
        callback: Called after every sampler step with ``{"i", "t", "x", "x0", "nfe"}``
            (latents, for a latent model).
        edit: Edit an input image instead of generating from noise
            (:class:`~genimage.editing.spec.EditSpec`: img2img with a strength; inpainting
            with a mask, whose kept pixels are returned exactly as given; super-resolution of
            a low-resolution input; RePaint resampling for the last two; outpainting of a
            canvas larger than the model, painted by windows, with ``window_overlap`` set).
            The edit plan (:mod:`genimage.editing.plan`) builds the start state and the
            model wrappers of every edit kind.
        noise_mark: A watermark in the initial noise (:func:`genimage.provenance.noise_mark.apply_entry`).
        control: Spatial control (:class:`~genimage.editing.control.ControlSpec`: a ControlNet,
            control images and a scale), wrapped around the denoiser inside guidance and inpainting.

    Returns:
        Images ``(N, C, H, W)`` in ``[-1, 1]``, float32 (a canvas edit's ``H x W`` is its canvas').
    """
    options = options or SamplingOptions.defaults(config)
    if bf16 is not None:
        options = dataclasses.replace(options, bf16=bf16)
    if (seeds is None) == (generators is None):
        raise GenimageError("generate() needs exactly one of seeds= or generators=")
    all_gens = list(generators) if generators is not None else generators_for_seeds(list(seeds))
    n = len(all_gens)
    if labels is not None and len(labels) != n:
        raise GenimageError(f"got {len(labels)} labels for {n} seeds")
    if prompts is not None and len(prompts) != n:
        raise GenimageError(f"got {len(prompts)} prompts for {n} seeds")
    from genimage.editing.plan import BatchContext, EditPlan

    sampler = SAMPLERS.get(options.sampler)
    plan = EditPlan(edit, config)
    plan.check(n)
    timesteps = plan.timesteps(make_schedule(options.schedule, denoiser.path, options.steps), options.steps)
    shape = (config.channels, config.image_size, config.image_size)
    autoencoder = None
    if config.autoencoder:
        from genimage.latent.autoencoder import attached_autoencoder

        autoencoder = attached_autoencoder(denoiser)
        if autoencoder is None or not config.latent_shape:
            raise GenimageError("a latent model needs its autoencoder and latent_shape: load it with "
                                "genimage.models.io.load_model (or build_denoiser)")
        shape = tuple(config.latent_shape)
    shape = plan.shape(shape)
    param = next(denoiser.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")

    def to_device(c):
        return None if c is None else {k: v.to(device) for k, v in c.items()}

    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        gens = all_gens[sl]
        eps = randn((len(gens), *shape), gens)
        if noise_mark is not None:
            from genimage.provenance.noise_mark import apply_entry as mark_noise

            eps = mark_noise(eps, noise_mark)
        ctx = BatchContext(denoiser, config, options, edit, autoencoder, shape, device, timesteps, sl, len(gens),
                           gens, eps)
        x = plan.start(ctx)
        cond = conditioner(labels=labels[sl] if labels is not None else None,
                           captions=prompts[sl] if prompts is not None else None, batch=len(gens))
        uncond = None
        if cond is not None and conditioner.uses_text and (negative or conditioner.encodes_empty_prompt):
            uncond = conditioner(labels=[None] * len(gens) if conditioner.uses_labels else None,
                                 captions=[negative or ""] * len(gens))
        ctx.cond, ctx.uncond = to_device(cond), to_device(uncond)
        ctx.control = control  # spatial control (genimage.editing.control's wrapper step)
        model = plan.model(ctx)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if options.bf16 else contextlib.nullcontext()
        with autocast:
            x = plan.sample(sampler, model, x, ctx, callback)
        if autoencoder is not None:
            x = plan.decode(autoencoder, x.float())
        check_generated(x.float())  # a diverged model: an error, not black or grey images
        out.append(plan.finish(x.float().clamp(-1, 1).cpu(), ctx))
    return torch.cat(out)


def check_edit(edit: "EditSpec", n: int, config: ModelConfig) -> None:
    """Raise a clear error unless ``edit`` fits ``n`` images of the model ``config``."""
    from genimage.editing.plan import EditPlan

    EditPlan(edit, config).check(n)
