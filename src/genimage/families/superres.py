"""The ``superres`` family: a denoiser conditioned on a low-resolution image (x F super-resolution).

SR3 (Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement", Sec. 2.3) and the
Stable Diffusion x4 upscaler feed the low-resolution input, upsampled to the output size, to the
denoiser as extra input channels: the backbone sees ``concat(x_t, up(y))`` with ``2 C`` channels
and predicts the usual ``C``-channel target. Everything else is genimage's denoising core: the
network sits in a :class:`~genimage.models.denoiser.Denoiser` (any path, any prediction), trains
with any denoising objective (:mod:`genimage.objectives`; flow matching by default, see
BENCHMARKS.md "Super-resolution x4") and samples with any sampler, the condition travelling in
``cond["lowres"]``.

By default the denoised variable is the *residual* over the bicubic upsampling, scaled to the
data's spread: ``r = s (x - up(y))`` with ``s = residual_scale`` (4: on 64 px photo crops the
residual's std is 0.14, the crops' 0.53), and the output is ``up(y) + r / s``. Predicting the
high-frequency residual is the usual choice of regression super-resolution (Kim et al. 2016,
"VDSR", Sec. 3.1) and of residual diffusion upscalers (e.g. Whang et al. 2022, "Deblurring via
Stochastic Refinement"); an untrained residual of zero is already the bicubic image, so a short CPU
training starts from bicubic quality instead of from noise. ``residual_scale = 0`` denoises ``x``
itself, as SR3 does.

The training pairs are made on the fly: a high-resolution crop ``x`` ``(B, C, S, S)`` and its
degradation ``y = A x``, the mean of each ``F x F`` block (:func:`degrade`, the operator DDNM uses
in :mod:`genimage.editing.known_region`). The condition is ``up(y)``, the bicubic upsampling of
``y`` back to ``S`` (:func:`upsample`).

Inputs of any size are cut into low-resolution tiles of ``S / F`` pixels with overlap and
blended by :mod:`genimage.editing.canvas` (see :mod:`genimage.editing.superres`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import GenerativeModel, Generators, OneNetworkTraining, StepContext
from genimage.models.config import ModelConfig

#: UNet sizes (``--preset``) of the conditional network; ``in_channels`` is set to ``2 C``.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 8},
    "small": {"block_out_channels": [16, 32, 64], "layers_per_block": 1, "norm_num_groups": 8,
              "attention_head_dim": 32},
    "base": {"block_out_channels": [64, 128, 128], "layers_per_block": 2, "norm_num_groups": 32},
}

#: Family settings kept in ``ModelConfig.family_config`` (``--set factor=4``); ``strength`` and
#: ``consistent`` are the upscaler's sampling defaults (see :meth:`SuperResModel.upscale`).
FAMILY_KEYS = ("factor", "residual_scale", "strength", "consistent")
#: Sampling defaults where a config does not say: chosen by measurement (BENCHMARKS.md,
#: "Super-resolution x4": from the bicubic image noised to mid-path, projected at every step).
DEFAULT_STRENGTH = 0.5
DEFAULT_CONSISTENT = True


def degrade(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The low-resolution observation ``y = A x``: the mean of every ``factor x factor`` block.

    Args:
        x: ``(B, C, H, W)`` images, ``H`` and ``W`` divisible by ``factor``.
        factor: Integer downscaling factor ``F``.

    Returns:
        ``(B, C, H / F, W / F)``.
    """
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise GenimageError(f"a {x.shape[-2]}x{x.shape[-1]} image does not split into {factor}x{factor} blocks")
    return F.avg_pool2d(x, factor)


def upsample(low: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling of ``low`` ``(B, C, h, w)`` by ``factor`` (the network's condition and
    the bicubic baseline), clamped to ``[-1, 1]``: ``(B, C, h F, w F)``."""
    size = (low.shape[-2] * factor, low.shape[-1] * factor)
    return F.interpolate(low.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


class SuperResNet(nn.Module):
    """A backbone that reads the upsampled low-resolution image as extra input channels.

    Args:
        backbone: A backbone ``(x, c_noise, cond) -> raw`` with ``2 C`` input channels (its raw
            output's first ``C`` channels are used).
        channels: Image channels ``C``.
    """

    def __init__(self, backbone: nn.Module, channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.channels = channels

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Args:
            x: Scaled noisy image ``(B, C, H, W)``.
            c_noise: Noise conditioning ``(B,)``.
            cond: ``{"lowres": (B, C, H, W)}``, the upsampled low-resolution input in ``[-1, 1]``.

        Returns:
            Raw output ``(B, C, H, W)``.
        """
        if cond is None or "lowres" not in cond:
            raise GenimageError("a super-resolution model needs its low-resolution input (cond['lowres'])")
        low = cond["lowres"]
        if low.shape != x.shape:
            raise GenimageError(f"low-resolution condition of shape {tuple(low.shape)} does not match the "
                                f"image {tuple(x.shape)}")
        return self.backbone(torch.cat([x, low.to(x.dtype)], dim=1), c_noise, None)[:, :self.channels]


class SuperResModel(OneNetworkTraining, GenerativeModel):
    """A conditional denoiser that upscales by ``config.family_config["factor"]``.

    Args:
        config: ``family="superres"``; ``backbone``/``backbone_config`` the network with
            ``in_channels = 2 * channels``; ``objective``/``path``/``prediction`` as for the
            diffusion family; ``image_size`` the output window ``S`` (the low-resolution window is
            ``S / factor``); ``family_config = {"factor": F, "residual_scale": s}`` (module docstring).
    """

    family = "superres"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        import genimage.models.backbones  # noqa: F401  (registers backbones)
        from genimage.models.backbones.base import build_backbone
        from genimage.models.denoiser import Denoiser
        from genimage.paths.base import build_path

        self.factor = check_factor(config.family_config.get("factor"), config.image_size)
        self.residual_scale = float(config.family_config.get("residual_scale", 0.0))
        if not self.residual_scale >= 0:
            raise GenimageError(f"residual_scale must be >= 0 (0 = denoise the image itself), got {self.residual_scale}")
        if int(config.backbone_config.get("in_channels", 0)) != 2 * config.channels:
            raise GenimageError(f"a superres backbone needs in_channels = 2 x {config.channels}, got "
                                f"{config.backbone_config.get('in_channels')}")
        self.network = SuperResNet(build_backbone(config.backbone, dict(config.backbone_config)), config.channels)
        self.denoiser = Denoiser(self.network, build_path(config.path), config.prediction, config.sigma_data)
        self._objective = None

    @property
    def low_size(self) -> int:
        """Side of the low-resolution window (``image_size / factor``)."""
        return self.config.image_size // self.factor

    @property
    def nfe_per_sample(self) -> int:
        from genimage.samplers import NFE_PER_STEP

        return NFE_PER_STEP.get(self.config.sampler, 1) * self.config.steps

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        if self._objective is None:
            from genimage.objectives import OBJECTIVES

            self._objective = OBJECTIVES.get(self.config.objective).build(0.0)  # the condition is never dropped
        x0 = batch["image"]
        up = upsample(degrade(x0, self.factor), self.factor)
        target = (x0 - up) * self.residual_scale if self.residual_scale else x0
        pair = {"image": target, "cond": {"lowres": up}}
        with ctx.autocast():
            loss = self._objective(self.denoiser, pair, ctx.generator).mean()
        return {"loss": self.update(loss, ctx)}

    def training_grid(self, reals: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """What the trainer's sample grid shows: for each real crop of ``reals`` ``(k, C, S, S)``,
        its bicubic upscale, the model's upscale and the crop itself (``3 k`` images)."""
        low = degrade(reals.to(self.device), self.factor)
        sr = self.upscale(low, list(generators)[:len(reals)]).cpu()
        bicubic = upsample(low, self.factor).cpu()
        return torch.stack([bicubic, sr, reals.cpu()], dim=1).flatten(0, 1)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, cond=None, generator: Generators = None) -> torch.Tensor:
        """Upscale ``cond``, ``n`` low-resolution images ``(n, C, S / F, S / F)`` in ``[-1, 1]``."""
        if not torch.is_tensor(cond):
            raise GenimageError("a super-resolution model samples from low-resolution images: pass them as cond "
                                "(or use genimage edit IMAGE --upscale F)")
        if cond.shape[0] != n:
            raise GenimageError(f"got {cond.shape[0]} low-resolution images for {n} samples")
        from genimage.families.diffusion import _as_generator_list

        return self.upscale(cond, _as_generator_list(n, generator))

    @torch.no_grad()
    def upscale(self, low: torch.Tensor, generators: Sequence[torch.Generator], *, steps: int | None = None,
                sampler: str | None = None, schedule: str | None = None, consistent: bool = False,
                strength: float = 1.0, callback=None) -> torch.Tensor:
        """Super-resolve low-resolution windows.

        Args:
            low: ``(N, C, s, s)`` in ``[-1, 1]`` with ``s = image_size / factor``.
            generators: One generator per image (image ``i`` depends only on its own).
            steps: Sampling steps (default: the config's).
            sampler: Sampler name (default: the config's).
            schedule: Timestep schedule name (default: the config's).
            consistent: Project every clean estimate so that its ``F x F`` block means equal
                ``low`` (DDNM's rule, :class:`~genimage.editing.known_region.LowResolutionDenoiser`).
            strength: Start the sampler at the last ``floor(steps * strength)`` steps, from the
                bicubic upsampling noised to that time (SDEdit, Meng et al. 2022, Sec. 3, with the
                bicubic image as the guide; the residual 0); 1 starts from pure noise.
            callback: Called after every sampler step (see :mod:`genimage.samplers`).

        Returns:
            ``(N, C, image_size, image_size)`` float32 in ``[-1, 1]``, on the CPU.
        """
        from genimage.generation import check_generated
        from genimage.paths.conversions import PathCoefficients
        from genimage.samplers import SAMPLERS, make_schedule
        from genimage.samplers.noise import randn

        c, s = self.config.channels, self.low_size
        if low.ndim != 4 or tuple(low.shape[1:]) != (c, s, s):
            raise GenimageError(f"this upscaler takes {c} x {s} x {s} low-resolution windows, got "
                                f"{tuple(low.shape[1:]) if low.ndim == 4 else tuple(low.shape)}")
        if len(generators) != low.shape[0]:
            raise GenimageError(f"got {len(generators)} generators for {low.shape[0]} images")
        cfg = self.config
        n_steps = int(steps or cfg.steps)
        if not 0 < float(strength) <= 1:
            raise GenimageError(f"--strength must be in (0, 1], got {strength}")
        run = min(int(n_steps * float(strength) + 1e-9), n_steps)
        if run < 1:
            raise GenimageError(f"--strength {strength} x --steps {n_steps} runs no step; raise either")
        timesteps = make_schedule(schedule or cfg.schedule, self.denoiser.path, n_steps)[-(run + 1):]
        c0 = PathCoefficients.at(self.denoiser.path, timesteps[0], ndim=1)
        size = cfg.image_size
        eps = randn((low.shape[0], c, size, size), list(generators))
        up = upsample(low.to(self.device), self.factor)
        start = torch.zeros_like(up) if self.residual_scale else up  # the bicubic image
        x = (float(c0.alpha) * start.double() + float(c0.sigma) * eps.double().to(self.device)).float()
        cond = {"lowres": up}
        model = self.denoiser
        if consistent:  # A x = y, i.e. A r = s (y - A up) for the residual r = s (x - up)
            from genimage.editing.known_region import LowResolutionDenoiser

            target = low.to(self.device).float()
            if self.residual_scale:
                target = self.residual_scale * (target - degrade(up, self.factor))
            model = LowResolutionDenoiser(model, target, self.factor)
        x = SAMPLERS.get(sampler or cfg.sampler)(model, x, timesteps, cond=cond, generator=list(generators),
                                                 callback=callback)
        check_generated(x.float())
        if self.residual_scale:
            x = up + x.float() / self.residual_scale
        return x.float().clamp(-1, 1).cpu()


def check_factor(factor, image_size: int) -> int:
    """``factor`` as an int >= 2 that divides ``image_size``, or a clear error."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2 or image_size % factor:
        raise GenimageError(f"the superres factor must be an integer >= 2 that divides the {image_size} px output "
                            f"window, got {factor!r} (--set factor=4)")
    return factor


def superres_model_config(preset: str, *, image_size: int, channels: int, objective: str, path: str | None,
                          overrides: dict[str, Any], sampler: str = "euler", steps: int = 16,
                          training: dict[str, Any] | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of a fresh ``superres`` model (``genimage train --family superres``).

    Args:
        preset: Network size, a key of :data:`PRESETS`.
        image_size: Output window ``S`` (the training crops' side).
        channels: Image channels ``C``.
        objective: Denoising objective name (``flow-matching``, ``edm``, ...).
        path: Noise path override, or ``None`` for the objective's.
        overrides: ``--set`` values: ``factor`` (default 4), ``residual_scale`` (default 4; 0 = denoise
            the image itself, module docstring), the sampling defaults ``strength`` and
            ``consistent`` (:data:`DEFAULT_STRENGTH`, :data:`DEFAULT_CONSISTENT`) and UNet config keys.
        sampler: Default sampler stored with the model.
        steps: Default sampling steps.
        training: Free-form training record (the data).
    """
    from genimage.objectives import OBJECTIVES

    if preset not in PRESETS:
        raise GenimageError(f"--family superres has presets {' | '.join(PRESETS)}, not {preset!r}")
    spec = OBJECTIVES.get(objective)
    overrides = dict(overrides)
    factor = overrides.pop("factor", 4)
    check_factor(factor, image_size)
    residual_scale = float(overrides.pop("residual_scale", 4.0))
    sampling = {k: overrides.pop(k) for k in ("strength", "consistent") if k in overrides}
    bcfg = {"image_size": image_size, "in_channels": 2 * channels, **PRESETS[preset], **overrides}
    from genimage.models.backbones.unet import UNetConfig

    UNetConfig(**bcfg)  # a bad override: a clear error now, not at the first step
    return ModelConfig(backbone="unet", backbone_config=bcfg, objective=objective, path=path or spec.path,
                       prediction=spec.prediction, image_size=image_size, channels=channels, sampler=sampler,
                       schedule="uniform", steps=steps, family="superres",
                       family_config={"factor": factor, "residual_scale": residual_scale, **sampling},
                       training=dict(training or {}))


register_family(FamilySpec(
    name="superres",
    model_cls=SuperResModel,
    presets=PRESETS,
    description="x F super-resolution conditioned on the low-resolution image (SR3), any --objective; --set factor=4",
    train_defaults={"cond_drop_prob": 0.0},
    conditioning=("none",),
))
