"""The diffusion family: every denoising objective (DDPM eps/v, EDM, flow matching,
rectified flow) as a :class:`~genimage.families.base.GenerativeModel`.

A thin adapter over the core: the network is a backbone inside a
:class:`~genimage.models.denoiser.Denoiser`, training is one objective's per-sample loss
(:mod:`genimage.objectives`), sampling is :func:`genimage.generation.generate`. Weights files
keep the backbone's own tensor names, so model folders written before families existed
load unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import GenerativeModel, Generators, OneNetworkTraining, StepContext
from genimage.models.config import ModelConfig


class DiffusionModel(OneNetworkTraining, GenerativeModel):
    """Args:
        config: A diffusion :class:`ModelConfig` (``objective``, ``path``, ``prediction``,
            ``backbone`` set).
    """

    family = "diffusion"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        from genimage.models.io import build_denoiser

        self.denoiser = build_denoiser(config)
        self._objective = None
        self._conditioner = None

    @property
    def network(self) -> nn.Module:
        return self.denoiser.network

    @property
    def conditioner(self):
        if self._conditioner is None:
            from genimage.conditioning.conditioner import Conditioner

            self._conditioner = Conditioner(self.config)
        return self._conditioner

    def share_conditioner(self, conditioner) -> None:
        """Sample with ``conditioner`` (e.g. a trainer's, whose text encoder is already loaded)."""
        self._conditioner = conditioner

    @property
    def nfe_per_sample(self) -> int:
        from genimage.samplers import NFE_PER_STEP

        per_step = NFE_PER_STEP.get(self.config.sampler, 1)
        guided = 2 if (self.config.guidance != 1.0 and (self.config.num_classes or self.config.text_encoder)) else 1
        return per_step * self.config.steps * guided

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        if self._objective is None:
            from genimage.objectives import OBJECTIVES

            self._objective = OBJECTIVES.get(self.config.objective).build(ctx.cond_drop_prob)
        with ctx.autocast():
            loss = self._objective(self.denoiser, batch, ctx.generator).mean()
        return {"loss": self.update(loss, ctx)}

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, cond=None, generator: Generators = None, *, negative: str | None = None,
               options=None) -> torch.Tensor:
        """Generate ``n`` images with the config's default sampler (or ``options``).

        ``cond``: ``None``, ``n`` class labels, ``n`` prompts (text models), or one prompt.
        """
        from genimage.generation import generate

        labels: Sequence[int | None] | None = None
        prompts: Sequence[str] | None = None
        if isinstance(cond, str):
            cond = [cond] * n
        if isinstance(cond, dict):
            raise GenimageError("DiffusionModel.sample takes labels or prompts, not a conditioning dict")
        if cond is not None:
            items = list(cond.tolist() if torch.is_tensor(cond) else cond)
            if len(items) != n:
                raise GenimageError(f"got {len(items)} labels/prompts for {n} samples")
            if self.config.text_encoder and all(isinstance(c, str) for c in items):
                prompts = items
            elif self.config.num_classes:
                labels = [None if c is None or int(c) < 0 else int(c) for c in items]
            else:
                raise GenimageError("this model is unconditional; do not pass labels or prompts")
        gens = _as_generator_list(n, generator)
        return generate(self.denoiser, self.config, self.conditioner, generators=gens, labels=labels,
                        prompts=prompts, negative=negative, options=options)


def _as_generator_list(n: int, generator: Generators) -> list[torch.Generator]:
    """Per-sample generators: a list is used as is; one generator (or none) seeds ``n``
    fresh ones from its draws, so a whole batch is still reproducible from one seed."""
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = list(generator)
        if len(gens) != n:
            raise GenimageError(f"got {len(gens)} generators for {n} samples")
        return gens
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


register_family(FamilySpec(
    name="diffusion",
    model_cls=DiffusionModel,
    presets={},  # backbone presets live in genimage.models.presets (dit / unet)
    description="diffusion and flow matching: ddpm-eps, ddpm-v, edm, flow-matching, rectified-flow (--objective)",
    conditioning=("label", "text", "none"),
))
