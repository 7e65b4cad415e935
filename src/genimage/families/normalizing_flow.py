"""The normalizing-flow family: a multi-scale RealNVP / Glow flow with exact likelihood.

Architecture (Dinh et al. 2017, "Density estimation using Real NVP", Sec. 3.6; Kingma &
Dhariwal 2018, "Glow", Fig. 2b), layers in :mod:`genimage.families.flow_layers`::

    x in [-1, 1] -> logit transform -> for each level:
        [checkerboard couplings] -> squeeze -> K x (ActNorm, 1x1 conv, affine coupling)
        -> factor out half of the channels (learned conditional prior)  (not at the last level)
    -> learned (conditional) top prior

Every layer, the priors included, is a bijection that ends in standardised variables, so
``log p(x) = sum log N(eps; 0, I) + sum logdet`` (change of variables, RealNVP Eq. 3).

Likelihood conventions (see :meth:`GenerativeModel.bits_per_dim`): the flow is a density over
the continuous variable in the ``[-1, 1]`` scale. Training adds centred uniform dequantisation
noise of one pixel step (``2/255``, drawn from ``ctx.generator``; RealNVP Sec. 4.1, Theis et al.
2016), so ``-log p`` is, in expectation, an upper bound on the discrete code length. The logit
pre-processing (RealNVP Sec. 4.1, ``alpha = 0.05``) maps the dequantised range
``[-1 - 1/255, 1 + 1/255]`` into logit space and contributes its log-det to ``log_prob``.
:meth:`NormalizingFlowModel.log_prob` is the exact density at the given ``x``;
:meth:`NormalizingFlowModel.bits_per_dim` dequantises first (deterministically seeded unless a
generator is given) and reports standard bits/dim.

Class conditioning (``num_classes > 0``): a label embedding (row ``num_classes`` = "no label",
used for dropped labels and unconditional sampling) is added inside every coupling net and
shifts the means and scales of every prior (Glow's class-conditional prior).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.base import GenerativeModel, Generators, StepContext, draw_noise
from genimage.families.flow_layers import (
    ActNorm,
    FactorOut,
    FlowSequence,
    Identity,
    LogitTransform,
    Squeeze,
    TopPrior,
    checkerboard_step,
    glow_step,
)
from genimage.models.config import ModelConfig

DEFAULTS: dict[str, Any] = {
    "levels": 2,
    "steps_per_level": 8,
    "hidden": 64,
    "checkerboard_steps": 0,
    "cond_dim": 32,
    "learned_prior": True,
    "clamp": 2.0,
    "preprocess": "logit",
    "logit_alpha": 0.05,
    "bins": 256,
}
"""Settings of ``backbone_config`` (besides ``image_size``, ``channels``, ``num_classes``):

* ``levels``: scales; each squeezes once (image side must be divisible by ``2**levels``).
* ``steps_per_level``: Glow steps (ActNorm, 1x1 conv, coupling) per level.
* ``hidden``: width of coupling nets.
* ``checkerboard_steps``: RealNVP checkerboard couplings before each squeeze (alternating parity).
* ``cond_dim``: label-embedding size (class-conditional models).
* ``learned_prior``: learn factored-out priors from the kept channels (else standard normal).
* ``clamp``: bound of ``|log scale|`` in couplings.
* ``preprocess``: ``"logit"`` (RealNVP) or ``"none"`` (work in ``[-1, 1]`` directly, log-det 0).
* ``logit_alpha``, ``bins``: logit margin and number of pixel values (dequantisation step).
"""

PRESETS: dict[str, dict[str, Any]] = {
    # digits 8x8x1: squeeze -> 4x4x4 (8 steps) -> factor 2 out -> 8x2x2 (8 steps) -> prior.
    "tiny": {**DEFAULTS, "levels": 2, "steps_per_level": 8, "hidden": 64, "checkerboard_steps": 0},
    # 32x32 RGB: 2 checkerboard couplings before each squeeze, 3 levels (12x16x16 -> 24x8x8 -> 48x4x4).
    "small": {**DEFAULTS, "levels": 3, "steps_per_level": 8, "hidden": 128, "checkerboard_steps": 2},
}


class NormalizingFlowModel(GenerativeModel):
    """Multi-scale affine-coupling flow with exact log-likelihood.

    Args:
        config: ``config.backbone_config`` holds :data:`DEFAULTS`-style settings plus
            ``image_size``, ``channels`` and ``num_classes``.
    """

    family = "normalizing-flow"
    has_likelihood = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        bc = {**DEFAULTS, **config.backbone_config}
        unknown = set(bc) - set(DEFAULTS) - {"image_size", "channels", "num_classes"}
        if unknown:
            raise GenimageError(f"unknown normalizing-flow settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.settings = bc
        c, size, levels = config.channels, config.image_size, int(bc["levels"])
        if levels < 1:
            raise GenimageError(f"normalizing-flow levels must be >= 1, got {levels}")
        if size % (2 ** levels):
            raise GenimageError(f"image_size {size} is not divisible by 2^levels = {2 ** levels}; "
                                f"use fewer levels (--set levels=N) or another image size")
        if bc["preprocess"] not in ("logit", "none"):
            raise GenimageError(f"preprocess must be 'logit' or 'none', got {bc['preprocess']!r}")
        self.num_classes = int(config.num_classes)
        cond_dim = int(bc["cond_dim"]) if self.num_classes > 0 else 0
        self.label_embed = nn.Embedding(self.num_classes + 1, cond_dim) if cond_dim else None
        self.pre = (LogitTransform(bc["logit_alpha"], bc["bins"]) if bc["preprocess"] == "logit" else Identity())
        hidden, clamp = int(bc["hidden"]), float(bc["clamp"])
        self.levels = nn.ModuleList()
        self.eps_shapes: list[tuple[int, int, int]] = []  # standardised variables leaving at each level
        for level in range(levels):
            layers: list[nn.Module] = [checkerboard_step(c, hidden, i % 2, cond_dim, clamp)
                                       for i in range(int(bc["checkerboard_steps"]))]
            layers.append(Squeeze())
            c, size = 4 * c, size // 2
            layers += [glow_step(c, hidden, cond_dim, clamp) for _ in range(int(bc["steps_per_level"]))]
            if level < levels - 1:
                layers.append(FactorOut(c, cond_dim, bool(bc["learned_prior"])))
                self.eps_shapes.append((c - c // 2, size, size))
                c = c // 2
            else:
                layers.append(TopPrior(c, cond_dim))
                self.eps_shapes.append((c, size, size))
            self.levels.append(FlowSequence(layers))

    # ------------------------------------------------------------------ the bijection
    def _cond_vector(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.label_embed is None:
            return None
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.long)
        idx = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return self.label_embed(idx.to(self.label_embed.weight.device))

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map images ``x`` to standard-normal variables.

        Returns:
            ``(eps, logdet)``: ``eps`` ``(B, D)`` (the factored-out variables of every level,
            flattened and concatenated) and ``log|det d eps / dx|`` ``(B,)``.
        """
        cond = self._cond_vector(labels, x.shape[0])
        h, logdet = self.pre(x)
        outs = []
        last = len(self.levels) - 1
        for i, (level, (c_out, _, _)) in enumerate(zip(self.levels, self.eps_shapes)):
            h, ld = level(h, cond)
            logdet = logdet + ld
            if i == last:
                outs.append(h.flatten(1))
            else:
                outs.append(h[:, h.shape[1] - c_out:].flatten(1))
                h = h[:, :h.shape[1] - c_out]
        return torch.cat(outs, 1), logdet

    def decode(self, eps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of :meth:`encode`: ``(B, D)`` standardised variables to images (not clamped)."""
        cond = self._cond_vector(labels, eps.shape[0])
        sizes = [math.prod(s) for s in self.eps_shapes]
        pieces = [p.reshape(eps.shape[0], *s) for p, s in zip(eps.split(sizes, 1), self.eps_shapes)]
        h = self.levels[-1].inverse(pieces[-1], cond)
        for level, piece in zip(reversed(self.levels[:-1]), reversed(pieces[:-1])):
            h = level.inverse(torch.cat([h, piece], 1), cond)
        return self.pre.inverse(h)

    @property
    def dims(self) -> int:
        return math.prod(self.image_shape)

    def actnorms(self) -> list[ActNorm]:
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    @property
    def initialized(self) -> bool:
        """Whether the ActNorm layers have had their data-dependent initialisation."""
        return all(bool(a.initialized) for a in self.actnorms())

    @torch.no_grad()
    def data_init(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Glow's data-dependent ActNorm initialisation from one batch (done by the first
        :meth:`training_step`; layers are initialised in order as the batch flows through)."""
        for a in self.actnorms():
            a.init_next = True
        try:
            self.encode(x, labels)
        finally:
            for a in self.actnorms():
                a.init_next = False

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        """Exact log density (nats per image) at ``x`` of the continuous ``[-1, 1]``-scaled
        variable (no noise is added here; see :meth:`bits_per_dim`)."""
        labels = self.check_cond(x.shape[0], cond)
        eps, logdet = self.encode(x.to(self.device, self._dtype()), labels)
        log_normal = -0.5 * (eps ** 2).sum(1) - 0.5 * eps.shape[1] * math.log(2 * math.pi)
        return log_normal + logdet

    def _dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def dequantize(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Add centred uniform noise of one pixel step (``2 / (bins - 1)`` in ``[-1, 1]``)."""
        step = 2.0 / (int(self.settings["bins"]) - 1)
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5
        return x + step * u.to(x.device)

    def bits_per_dim(self, x: torch.Tensor, cond=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bits/dim of 8-bit images ``x`` (``(n,)``) with uniform dequantisation (one draw;
        seeded with 0 when ``generator`` is ``None`` so repeated calls agree)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return super().bits_per_dim(self.dequantize(x, gen), cond)

    def _bpd_from_logp(self, logp: torch.Tensor) -> torch.Tensor:
        d = self.dims
        return -(logp - d * math.log(127.5)) / (d * math.log(2.0))

    # ------------------------------------------------------------------ training
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One Adam step on the negative log-likelihood in bits/dim of dequantised data.

        Runs in float32 (``ctx.autocast`` is not used: log-determinants need full precision).
        Labels are dropped with probability ``ctx.cond_drop_prob`` so the model also learns
        the unconditional density.
        """
        x = batch["image"].to(self.device, torch.float32)
        labels = None
        if self.num_classes > 0:
            cond = batch.get("cond")
            raw = cond.get("label") if isinstance(cond, dict) else None
            labels = (torch.full((x.shape[0],), -1, dtype=torch.long) if raw is None
                      else torch.as_tensor(raw, dtype=torch.long).reshape(-1).cpu())
            if ctx.cond_drop_prob > 0:
                drop = torch.rand(x.shape[0], generator=ctx.generator) < ctx.cond_drop_prob
                labels = torch.where(drop, torch.full_like(labels, -1), labels)
        elif isinstance(batch.get("cond"), dict) and batch["cond"].get("label") is not None:
            raise GenimageError("this normalizing-flow model is unconditional but the batch has labels")
        x = self.dequantize(x, ctx.generator)
        if not self.initialized:
            self.data_init(x, labels)
        opt = ctx.optimizers["main"]
        eps, logdet = self.encode(x, labels)
        logp = -0.5 * (eps ** 2).sum(1) - 0.5 * eps.shape[1] * math.log(2 * math.pi) + logdet
        bpd = self._bpd_from_logp(logp).mean()
        opt.zero_grad(set_to_none=True)
        ctx.backward(bpd)
        ctx.clip(self.parameters())
        opt.step()
        value = float(bpd.detach())
        return {"loss": value, "bpd": value}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, cond=None, generator: Generators = None, temperature: float = 1.0) -> torch.Tensor:
        """Draw ``n`` images: ``eps ~ N(0, temperature^2 I)`` pushed through the inverse flow
        (Glow Sec. 5 "reduced temperature"). A list of generators draws row ``i`` from
        ``generator[i]`` only."""
        if not temperature >= 0:
            raise GenimageError(f"temperature must be >= 0, got {temperature}")
        labels = self.check_cond(n, cond)
        eps = draw_noise((n, self.dims), generator).to(self.device, self._dtype()) * temperature
        x = self.decode(eps, labels)
        return torch.nan_to_num(x.float(), nan=0.0).clamp(-1.0, 1.0)


register_family(FamilySpec(
    name="normalizing-flow",
    model_cls=NormalizingFlowModel,
    presets=PRESETS,
    description="normalizing flow (multi-scale RealNVP/Glow: ActNorm, 1x1 conv, affine coupling); exact bits/dim",
    train_defaults={"lr": 1e-3, "warmup_steps": 200, "batch_size": 64, "ema_decay": 0.999},
    conditioning=("label", "none"),
))
