"""The one Generator interface every model family implements.

Every family (diffusion / flow matching, consistency models, GAN, VAE, normalizing flow,
autoencoder) is a :class:`GenerativeModel`: an ``nn.Module`` built from a
:class:`~genimage.models.config.ModelConfig` that

* samples: ``sample(n, cond=None, generator=None) -> (n, C, H, W)`` in ``[-1, 1]``;
* optionally has a likelihood: ``log_prob(x, cond=None)`` in nats per image, and
  ``bits_per_dim`` derived from it (with the 8-bit dequantisation offset of
  Dinh et al. 2017, "Density estimation using Real NVP", Sec. 4.1);
* trains through one generic trainer: it creates its optimizers
  (:meth:`configure_optimizers`) and performs one update on a batch
  (:meth:`training_step`) using a :class:`StepContext` for backward, clipping and
  randomness, so the trainer never branches on the family (GANs alternate their own
  discriminator/generator updates inside ``training_step``).

The trainer keeps an EMA of :meth:`ema_module` (the whole model by default; the generator
for GANs). A saved model folder's ``model.safetensors`` holds those EMA weights and is
loaded back with :meth:`load_sampling_state`; ``network.safetensors`` in checkpoints holds
:meth:`training_state` (everything, for exact resume).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.models.config import ModelConfig

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class StepContext:
    """What :meth:`GenerativeModel.training_step` may use.

    Attributes:
        optimizers: The optimizers returned by :meth:`GenerativeModel.configure_optimizers`,
            with the current learning rate already set.
        generator: The trainer's random generator (all training randomness comes from it so
            resume is exact).
        step: Index of this update (0-based).
        backward: ``backward(loss)`` (accelerate-aware ``loss.backward()``).
        clip: ``clip(parameters)`` clips the global gradient norm to the configured value
            (no-op when clipping is off).
        autocast: Context-manager factory for the forward pass (bf16 autocast when enabled).
        cond_drop_prob: Conditioning dropout probability for classifier-free guidance.
    """

    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    step: int
    backward: Callable[[torch.Tensor], None]
    clip: Callable[[Any], None]
    autocast: Callable[[], contextlib.AbstractContextManager]
    cond_drop_prob: float = 0.1


def draw_noise(shape: Sequence[int], generator: Generators, device=None) -> torch.Tensor:
    """Standard normal noise of ``shape``; a list of generators draws row ``i`` from
    ``generator[i]`` (so image ``i`` depends only on its own seed)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise GenimageError(f"got {len(gens)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device) for g in gens])


class GenerativeModel(nn.Module):
    """Base class of every family.

    Args:
        config: The model config; ``config.family`` names the family and
            ``config.backbone_config`` holds the family's architecture settings.

    Class attributes:
        family: Registry name of the family.
        has_likelihood: Whether :meth:`log_prob` is defined (exactly or as a bound).
        likelihood_is_bound: ``True`` when :meth:`log_prob` is a lower bound (VAE ELBO).
    """

    family: ClassVar[str] = ""
    has_likelihood: ClassVar[bool] = False
    likelihood_is_bound: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    # ------------------------------------------------------------ geometry / conditioning
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.channels, self.config.image_size, self.config.image_size)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def check_cond(self, n: int, cond) -> torch.Tensor | None:
        """Validate ``cond`` for label-conditional families and return a ``(n,)`` long
        tensor of labels (``-1`` = unconditional), or ``None`` for unconditional models.

        ``cond`` may be ``None``, a sequence/tensor of ``n`` labels, or the conditioning
        dict built by :class:`~genimage.conditioning.conditioner.Conditioner`.
        """
        if isinstance(cond, dict):
            cond = cond.get("label")
        if self.config.num_classes == 0:
            if cond is not None:
                raise GenimageError(f"this {self.family} model is unconditional; do not pass labels")
            return None
        if cond is None:
            return torch.full((n,), -1, dtype=torch.long)
        labels = torch.as_tensor(cond, dtype=torch.long).reshape(-1)
        if labels.numel() != n:
            raise GenimageError(f"got {labels.numel()} labels for {n} samples")
        if ((labels < -1) | (labels >= self.config.num_classes)).any():
            raise GenimageError(f"labels must be in 0..{self.config.num_classes - 1} (or -1 for none)")
        return labels

    # ------------------------------------------------------------ the Generator interface
    def sample(self, n: int, cond=None, generator: Generators = None) -> torch.Tensor:
        """Draw ``n`` images ``(n, C, H, W)`` in ``[-1, 1]`` (float32, no grad needed)."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        """Log-likelihood (nats) of each image of ``x`` in ``[-1, 1]``, shape ``(n,)``.

        For 8-bit data the model density is of the continuous, dequantised variable scaled to
        ``[-1, 1]``; :meth:`bits_per_dim` converts it to the discrete bits/dim that papers report.
        """
        raise GenimageError(f"the {self.family} family has no likelihood")

    def bits_per_dim(self, x: torch.Tensor, cond=None) -> torch.Tensor:
        """Bits per dimension of 8-bit images ``x`` (``(n,)``), lower is better.

        genimage scales pixel values ``y`` in ``0..255`` to ``x = y / 127.5 - 1``, so a density
        over ``x`` becomes one over pixel units by dividing by ``127.5^D``:
        ``bpd = -(log p(x) - D log 127.5) / (D log 2)`` (Dinh et al. 2017, Sec. 4.1; Glow uses
        the same convention). Families should evaluate ``log_prob`` on uniformly dequantised
        data (noise of one pixel step, ``2/255``, added in training) for this to be a bound on
        the discrete bits/dim.
        """
        d = x[0].numel()
        logp = self.log_prob(x, cond)
        return -(logp - d * math.log(127.5)) / (d * math.log(2.0))

    @property
    def nfe_per_sample(self) -> int:
        """Network evaluations per generated image at the default settings."""
        return 1

    # ------------------------------------------------------------ training
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name (default: one AdamW named ``"main"`` over all parameters)."""
        return {"main": torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999))}

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """One update on ``batch`` = ``{"image": (B, C, H, W) in [-1, 1], "cond": dict | None}``.

        Must zero grads, backward, clip and step its optimizers itself, and return scalar
        metrics; the key ``"loss"`` is required (it is what the progress bar shows).
        """
        raise NotImplementedError

    def grad_accumulation_problem(self) -> str | None:
        """Why ``--grad-accum`` would not equal a larger batch for this model, or ``None``.

        The trainer runs :meth:`training_step` once per micro-batch with deferred optimizer
        steps (``genimage.training.distributed``); that is one large-batch update only when
        the loss is a mean of per-sample terms and the step makes one update. Default: it is.
        """
        return None

    def init_for_training(self) -> None:
        """Called once before a fresh (not resumed) run's first step, before the EMA copy is
        taken: e.g. start a distilled student from its teacher's weights."""

    def health_warnings(self, history: list[dict[str, float]], samples: torch.Tensor, labels: torch.Tensor | None,
                        reals: torch.Tensor, real_labels: torch.Tensor | None, classify=None) -> list[str]:
        """Warnings (with their numbers) about divergence or mode collapse, checked by the trainer
        at every sample grid: ``history`` = recent training metrics, ``samples`` drawn with
        ``labels``, ``reals`` a training batch, ``classify`` a classifier for labelled built-in
        data. Default: none (families whose training cannot collapse this way)."""
        return []

    def ema_module(self) -> nn.Module:
        """The sub-module whose EMA is used for sampling (default: the whole model)."""
        return self

    def training_state(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume (written as ``network.safetensors``)."""
        return self.state_dict()

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)

    def load_sampling_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``model.safetensors`` (the EMA weights of :meth:`ema_module`)."""
        try:
            missing, unexpected = self.ema_module().load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of the wrong shape
            first = str(exc).strip().splitlines()
            raise GenimageError(f"model.safetensors does not match config.json: {first[-1].strip() if first else exc}") from None
        if missing or unexpected:
            raise GenimageError(
                f"model.safetensors does not match config.json (missing {len(missing)} tensors, e.g. {missing[:2]}; "
                f"unexpected {len(unexpected)}, e.g. {unexpected[:2]})")


class OneNetworkTraining:
    """Training plumbing shared by the families that train one network, ``self.network``, with
    one AdamW optimizer ``"main"`` (diffusion and its subclasses, superres): the optimizer, the
    update, the EMA module and the resumable state are that network's."""

    network: nn.Module

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.AdamW(self.network.parameters(), lr=lr, weight_decay=weight_decay,
                                          betas=(0.9, 0.999))}

    def update(self, loss: torch.Tensor, ctx: StepContext) -> float:
        """Backpropagate, clip and apply ``loss`` with the ``"main"`` optimizer (the trainer skips a
        step whose loss or gradient is not finite: :mod:`genimage.training.guard`)."""
        opt = ctx.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        ctx.backward(loss)
        ctx.clip(self.network.parameters())
        opt.step()
        return float(loss.detach())

    def ema_module(self) -> nn.Module:
        return self.network

    def training_state(self) -> dict[str, torch.Tensor]:
        return self.network.state_dict()

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(state)
