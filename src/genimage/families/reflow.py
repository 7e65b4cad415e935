"""Reflow and one-step distillation (Liu et al. 2023, "Flow Straight and Fast: Learning to
Generate and Transfer Data with Rectified Flow", Sec. 2.2-2.3).

Reflow retrains a flow on couplings ``(eps, x_hat)`` where ``x_hat`` is what the teacher
flow's ODE makes of ``eps``: with ``x_t = (1 - t) x_hat + t eps`` the loss is
``|| v(x_t, t) - (eps - x_hat) ||^2`` (their Eq. 1 on the new coupling). The new flow's
paths are straighter, so few Euler steps suffice; repeated, it gives the k-rectified flow.

One-step distillation (``family_config["distill"] = True``) trains only at ``t = 1``: one
Euler step from noise, ``eps - v(eps, 1)``, must land on ``x_hat`` (their Sec. 2.3 with an
L2 distance).

Pairs come either from a pool generated once before training (``family_config["pairs"] =
N``, class-conditional or unconditional teachers; labels drawn uniformly; the pool is saved
in every checkpoint so resume is exact without regenerating it, as the paper's fixed
coupling) or, with ``pairs = 0``, fresh every step from the trainer's generator (the teacher
runs its ODE on the batch's noise with the batch's labels or captions; needed for text
models, ~teacher-NFE times slower per step). The student starts from the teacher's weights
and is an ordinary flow-matching model: it samples with Euler through ``generate``.
"""

from __future__ import annotations

from typing import Any

import torch

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import StepContext
from genimage.families.teacher import StudentModel
from genimage.models.config import ModelConfig
from genimage.objectives.denoising import drop_condition
from genimage.paths.conversions import PathCoefficients, noisy


class ReflowModel(StudentModel):
    """A rectified flow retrained on its teacher's (noise, sample) pairs."""

    family = "reflow"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.distill = bool(config.family_config.get("distill", False))
        self.pool_size = int(config.family_config.get("pairs", 0 if config.text_encoder else 4096))
        if self.pool_size and config.text_encoder:
            raise GenimageError("a pair pool needs labels or no conditioning; use --set pairs=0 for text models")
        shape = (self.pool_size, *self.image_shape)
        self.register_buffer("pool_noise", torch.zeros(shape), persistent=False)
        self.register_buffer("pool_sample", torch.zeros(shape), persistent=False)
        self.register_buffer("pool_label", torch.full((self.pool_size,), -1, dtype=torch.long), persistent=False)

    def init_for_training(self) -> None:
        self.init_from_teacher()
        if self.pool_size:
            self.make_pool(torch.Generator().manual_seed(int(self.config.family_config.get("pair_seed", 0))))

    @torch.no_grad()
    def make_pool(self, generator: torch.Generator, batch: int = 256) -> None:
        """Solve the teacher ODE for ``pool_size`` noise draws (labels uniform when the model is
        class-conditional)."""
        from tqdm import tqdm

        n, k = self.pool_size, self.config.num_classes
        self.pool_noise.copy_(torch.randn(self.pool_noise.shape, generator=generator))
        if k:
            self.pool_label.copy_(torch.randint(0, k, (n,), generator=generator))
        for start in tqdm(range(0, n, batch), desc="reflow pairs", unit="batch", leave=False):
            sl = slice(start, start + batch)
            cond = {"label": self.pool_label[sl].to(self.device)} if k else None
            self.pool_sample[sl] = self.teacher.solve(self.pool_noise[sl].to(self.device), cond).cpu()

    def training_state(self) -> dict[str, torch.Tensor]:
        state = dict(self.network.state_dict())
        if self.pool_size:
            state.update({"pool.noise": self.pool_noise, "pool.sample": self.pool_sample, "pool.label": self.pool_label})
        return state

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if self.pool_size:
            self.pool_noise.copy_(state.pop("pool.noise"))
            self.pool_sample.copy_(state.pop("pool.sample"))
            self.pool_label.copy_(state.pop("pool.label"))
        self.network.load_state_dict(state)

    def _pairs(self, batch: dict[str, Any], generator: torch.Generator):
        x_data = batch["image"]
        dev = x_data.device
        if self.pool_size:
            idx = torch.randint(0, self.pool_size, (x_data.shape[0],), generator=generator)
            cond = {"label": self.pool_label[idx].to(dev)} if self.config.num_classes else None
            return self.pool_noise[idx].to(dev), self.pool_sample[idx].to(dev), cond
        eps = torch.randn(x_data.shape, generator=generator).to(dev, x_data.dtype)
        return eps, None, batch.get("cond")

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x_data = batch["image"]
        b, gen = x_data.shape[0], ctx.generator
        eps, x_hat, cond = self._pairs(batch, gen)
        if x_hat is None:  # fresh pairs, with the batch's own conditioning
            x_hat = self.teacher.solve(eps.clone(), cond)
        cond = drop_condition(cond, ctx.cond_drop_prob, gen)
        if self.distill:
            t = torch.ones(b, dtype=torch.float64)
        else:
            t = torch.rand(b, generator=gen, dtype=torch.float64)
        x_t = noisy(x_hat.to(x_data.dtype), eps, PathCoefficients.at(self.denoiser.path, t, x_data.ndim))
        with ctx.autocast():
            v = self.denoiser.raw(x_t, t, cond)
        loss = (v.float() - (eps - x_hat).float()).pow(2).flatten(1).mean(1).mean()
        return {"loss": self.update(loss, ctx)}


register_family(FamilySpec(
    name="reflow",
    model_cls=ReflowModel,
    presets={},  # architecture: the teacher's
    description="reflow (rectified flow on teacher pairs) and, with --set distill=true, one-step distillation; needs --teacher",
    train_defaults={"lr": 1e-4, "warmup_steps": 0},
    conditioning=("label", "text", "none"),
))
