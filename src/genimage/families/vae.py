"""Two families on one convolutional encoder/decoder (:mod:`.autoencoder_networks`).

``vae`` — a variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"): diagonal Gaussian posterior ``q(z|x)``, standard normal prior ``p(z)`` over a flat
or spatial latent, trained by maximising the ELBO (their Eq. 3)::

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z))

with the KL in closed form (their App. B) and the reparameterised one-sample estimate of the
reconstruction term. Optional KL warm-up (Sønderby et al. 2016, "Ladder VAE", Sec. 2.3) and
free bits (Kingma et al. 2016, "Improved Variational Inference with Inverse Autoregressive
Flow", App. C) change only the training loss, never the reported bound.

Decoder likelihood (the choice that makes bits/dim honest): a **discretized logistic** over
the 256 8-bit levels (Salimans et al. 2017, "PixelCNN++", Sec. 2.1, Eq. 2), with the mean
predicted per pixel and a learned log-scale (one per channel, or per pixel with
``decoder_scale="pixel"``). It assigns a probability ``P(bin)`` to the 8-bit bin holding each
pixel (values between levels, e.g. the 17-level digits, fall in the nearest bin), and the
probabilities of the 256 bins sum to one exactly, so ``E_q log P(x|z) - KL`` is a true lower
bound on the *discrete* log-likelihood: no dequantisation noise and no Jensen gap from it.
:meth:`VAE.log_prob` returns this bound converted to the density, over ``[-1, 1]``, of the
uniformly dequantised image (bin width ``2/255``): ``ELBO + D log(127.5)``, which is what
:meth:`~genimage.families.base.GenerativeModel.bits_per_dim` expects, so ``bits_per_dim``
equals ``-ELBO / (D ln 2)`` exactly. ``log_prob(x, k=K)`` gives the tighter importance
weighted bound (Burda et al. 2016, "Importance Weighted Autoencoders", Eq. 8).

``autoencoder`` — the KL-regularised first stage of latent diffusion (Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3 and App. G): the same
encoder/decoder with a spatial latent (downsampling ``f`` = 4 or 8), an L1 (+ optional L2)
reconstruction loss, a tiny KL weight (1e-6) towards ``N(0, I)``, and an optional PatchGAN
with the hinge loss switched on after ``disc_start`` steps, weighted adaptively as in VQGAN
(Esser et al. 2021, "Taming Transformers", Eq. 7). Latents are multiplied by a buffer
``scale_factor = 1 / std(z)`` so that the diffusion model sees latents of ~unit std (Rombach
et al. 2022, Sec. 4.3.2 / App. G): a running estimate kept during training, made exact by
:meth:`KLAutoencoder.calibrate`. An autoencoder is not a generator by itself;
:meth:`KLAutoencoder.sample` decodes standard normal *scaled* latents only so that the generic
trainer's preview grid and ``genimage sample`` work (see its docstring): use it through latent
diffusion for real samples.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from genimage.errors import GenimageError
from genimage.families import FamilySpec, register_family
from genimage.families.autoencoder_networks import ConvAEConfig, Decoder, Encoder, PatchDiscriminator
from genimage.families.base import GenerativeModel, Generators, StepContext, draw_noise
from genimage.models.config import ModelConfig

PIXEL_LEVELS = 256
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 5.0  # PixelCNN++ clamps log-scales at -7

VAE_SETTINGS = {"decoder_scale": "channel", "kl_warmup_steps": 0, "free_bits": 0.0}
AE_SETTINGS = {"kl_weight": 1e-6, "l2_weight": 0.0, "discriminator": False, "disc_start": 0, "disc_weight": 0.5,
               "disc_adaptive": True, "disc_width": 32, "disc_layers": 2, "disc_lr_scale": 1.0,
               "scale_momentum": 0.99}


# ---------------------------------------------------------------------------------------- math
def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log P(bin(x))`` under a logistic(mean, scale) discretised to 256 levels.

    Salimans et al. 2017, Eq. 2: ``P = sigmoid((c + h - mean)/s) - sigmoid((c - h - mean)/s)``
    with ``c`` the centre of the 8-bit bin of ``x`` and ``h = 1/255`` half its width; the
    first bin extends to ``-inf`` and the last to ``+inf``, so the 256 probabilities sum to 1.
    The difference is evaluated stably as
    ``log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a))`` (an exact identity).

    Args:
        x: Data in ``[-1, 1]`` (snapped to the nearest of the 256 levels).
        mean, log_scale: Logistic parameters, broadcastable to ``x``.
    """
    half = 1.0 / (PIXEL_LEVELS - 1)
    k = ((x + 1.0) / (2.0 * half)).round().clamp(0, PIXEL_LEVELS - 1)
    centre = k * (2.0 * half) - 1.0
    inv = torch.exp(-log_scale)
    a = (centre - mean + half) * inv
    b = (centre - mean - half) * inv
    mid = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(b - a))
    left, right = F.logsigmoid(a), F.logsigmoid(-b)
    return torch.where(k == 0, left, torch.where(k == PIXEL_LEVELS - 1, right, mid))


def gaussian_kl_standard(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(mean, exp(logvar)) || N(0, 1))`` (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)


def _normal_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).square() * torch.exp(-logvar))


def _noise(shape: tuple[int, ...], generator: Generators, device: torch.device) -> torch.Tensor:
    """:func:`draw_noise` drawn on the generator's device, then moved to ``device``."""
    if isinstance(generator, torch.Generator):
        gdev = generator.device
    elif generator is not None:
        generator = list(generator)
        gdev = generator[0].device if generator else None
    else:
        gdev = device
    return draw_noise(shape, generator, device=gdev).to(device)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between flat vectors ``a`` and ``b`` at times ``t`` (White 2016,
    "Sampling Generative Networks", Sec. 2.1); linear when they are (anti-)parallel."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


def _network_config(config: ModelConfig, defaults: dict[str, Any]) -> ConvAEConfig:
    bc = dict(config.backbone_config)
    for key in ("image_size", "channels", "num_classes"):
        if key in bc and bc[key] != getattr(config, key):
            raise GenimageError(
                f"backbone_config {key}={bc[key]} disagrees with the model config's {key}={getattr(config, key)}")
        bc[key] = getattr(config, key)
    cfg = ConvAEConfig.from_dict(bc, allowed_extra=set(defaults))
    cfg.extra = {**defaults, **cfg.extra}
    return cfg


def _load_sampling_state(model: GenerativeModel, state: dict[str, torch.Tensor]) -> None:
    """:meth:`GenerativeModel.load_sampling_state`, with tensor shape mismatches (weights of
    another architecture) reported as a :class:`GenimageError` instead of a RuntimeError."""
    try:
        GenerativeModel.load_sampling_state(model, state)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise GenimageError(f"model.safetensors does not match config.json ({first.strip()})") from None


def _train_labels(model: GenerativeModel, batch: dict[str, Any], ctx: StepContext, n: int) -> torch.Tensor | None:
    """Batch labels with classifier-free-style dropout (``-1`` = dropped), or ``None``."""
    if model.config.num_classes == 0:
        return None
    cond = batch.get("cond")
    labels = cond.get("label") if isinstance(cond, dict) else None
    if labels is None:
        return torch.full((n,), -1, dtype=torch.long, device=batch["image"].device)
    labels = labels.to(torch.long)
    if ctx.cond_drop_prob > 0:
        drop = torch.rand(n, generator=ctx.generator, device=ctx.generator.device).to(labels.device)
        labels = torch.where(drop < ctx.cond_drop_prob, torch.full_like(labels, -1), labels)
    return labels


# ---------------------------------------------------------------------------------------- VAE
class VAE(GenerativeModel):
    """Variational autoencoder with a discretized-logistic decoder (see the module docstring).

    ``config.backbone_config`` holds :class:`ConvAEConfig` keys plus ``decoder_scale``
    (``"channel"``: one learned log-scale per channel; ``"pixel"``: predicted per pixel),
    ``kl_warmup_steps`` (linear KL weight 0 -> 1 over that many steps; 0 = off) and
    ``free_bits`` (nats per latent dimension below which the batch-mean KL is not
    penalised; 0 = off).
    """

    family = "vae"
    has_likelihood = True
    likelihood_is_bound = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        cfg = _network_config(config, dict(VAE_SETTINGS))
        scale_kind = cfg.extra["decoder_scale"]
        if scale_kind not in ("channel", "pixel"):
            raise GenimageError(f"decoder_scale must be 'channel' or 'pixel', got {scale_kind!r}")
        cfg.out_channels_mult = 2 if scale_kind == "pixel" else 1
        self.net_config = cfg
        self.decoder_scale = scale_kind
        self.kl_warmup_steps = int(cfg.extra["kl_warmup_steps"])
        self.free_bits = float(cfg.extra["free_bits"])
        if self.kl_warmup_steps < 0 or self.free_bits < 0:
            raise GenimageError("kl_warmup_steps and free_bits must be >= 0")
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.log_scale = nn.Parameter(torch.full((cfg.channels,), -2.0)) if scale_kind == "channel" else None

    def load_sampling_state(self, state: dict[str, torch.Tensor]) -> None:
        _load_sampling_state(self, state)

    # ------------------------------------------------------------------ pieces
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.net_config.latent_shape

    def encode(self, x: torch.Tensor, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``q(z|x) = N(mean, exp(logvar))``: returns ``(mean, logvar)``."""
        self._check_images(x)
        labels = self.check_cond(x.shape[0], cond)
        return self.encoder(x, None if labels is None else labels.to(x.device))

    def decoder_params(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logistic ``(mean, log_scale)`` of ``p(x|z)``, each ``(B, C, H, W)``."""
        out = self.decoder(z, labels).float()
        c = self.net_config.channels
        if self.log_scale is None:
            mean, log_scale = out[:, :c], out[:, c:]
        else:
            mean, log_scale = out, self.log_scale.view(1, c, 1, 1).expand_as(out)
        return mean, log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    def decode(self, z: torch.Tensor, cond=None) -> torch.Tensor:
        """Decoder mean for latents ``z`` ``(B, *latent_shape)``, clamped to ``[-1, 1]``."""
        if tuple(z.shape[1:]) != self.latent_shape:
            raise GenimageError(f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), "
                                f"got {tuple(z.shape)}")
        labels = self.check_cond(z.shape[0], cond)
        mean, _ = self.decoder_params(z, None if labels is None else labels.to(z.device))
        return mean.clamp(-1.0, 1.0)

    def _check_images(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise GenimageError(f"images must have shape (B, {', '.join(map(str, self.image_shape))}), "
                                f"got {tuple(x.shape)}")

    def reconstruction_log_prob(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``log P(x|z)`` in nats per image (sum over pixels), shape ``(B,)``."""
        mean, log_scale = self.decoder_params(z, labels)
        return discretized_logistic_log_prob(x.float(), mean, log_scale).flatten(1).sum(1)

    # ------------------------------------------------------------------ likelihood
    def elbo(self, x: torch.Tensor, cond=None, *, k: int = 1, generator: Generators = None) -> torch.Tensor:
        """Lower bound on the discrete log-likelihood ``log P(x)`` of 8-bit images, nats per image.

        ``k = 1``: ``log P(x|z) - KL(q||p)`` with one reparameterised ``z ~ q(z|x)`` and the KL in
        closed form (Kingma & Welling 2014, Eq. 10). ``k > 1``: the importance weighted bound
        ``log mean_i p(x, z_i) / q(z_i|x)`` (Burda et al. 2016, Eq. 8), tighter as ``k`` grows.
        ``generator`` may be one generator or one per image.
        """
        if k < 1:
            raise GenimageError(f"k (importance samples) must be at least 1, got {k}")
        self._check_images(x)
        labels = self.check_cond(x.shape[0], cond)
        if labels is not None:
            labels = labels.to(x.device)
        mean, logvar = self.encoder(x, labels)
        mean, logvar = mean.float(), logvar.float()
        b = x.shape[0]
        eps = _noise((b, k, *mean.shape[1:]), generator, x.device)
        z = mean[:, None] + torch.exp(0.5 * logvar)[:, None] * eps  # (B, k, *latent)
        rep = lambda t: t.repeat_interleave(k, 0) if t is not None else None  # noqa: E731
        rec = self.reconstruction_log_prob(rep(x), z.flatten(0, 1), rep(labels)).view(b, k)
        if k == 1:
            return rec[:, 0] - gaussian_kl_standard(mean, logvar).flatten(1).sum(1)
        log_prior = _normal_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).flatten(2).sum(2)
        log_q = _normal_log_density(z, mean[:, None], logvar[:, None]).flatten(2).sum(2)
        return torch.logsumexp(rec + log_prior - log_q, dim=1) - math.log(k)

    def log_prob(self, x: torch.Tensor, cond=None, *, k: int = 1, generator: Generators = None) -> torch.Tensor:
        """The ELBO (or, with ``k > 1``, the importance weighted bound) as a log-density over
        ``[-1, 1]`` of the uniformly dequantised image, nats per image, shape ``(n,)``.

        Equals :meth:`elbo` ``+ D log(127.5)``: a discrete probability ``P`` spread uniformly
        over its bin of width ``2/255`` is the density ``P * (255/2)`` per pixel. So
        :meth:`bits_per_dim` returns exactly ``-elbo / (D ln 2)``, an upper bound on the true
        discrete bits/dim.
        """
        d = x[0].numel()
        return self.elbo(x, cond, k=k, generator=generator) + d * math.log(127.5)

    def bits_per_dim(self, x: torch.Tensor, cond=None, generator: Generators = None) -> torch.Tensor:
        """``-elbo / (D ln 2)`` per image (see :meth:`log_prob`), an upper bound on the discrete
        bits/dim; the posterior draw comes from ``generator`` (seeded with 0 when ``None``, so
        repeated evaluations of the same images agree)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return -self.elbo(x, cond, generator=gen) / (x[0].numel() * math.log(2.0))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, cond=None, generator: Generators = None) -> torch.Tensor:
        """Decoder means of ``z ~ N(0, I)`` (the usual VAE sample; blurrier than a draw from
        ``p(x|z)`` but free of per-pixel noise), ``(n, C, H, W)`` in ``[-1, 1]``."""
        labels = self.check_cond(n, cond)
        z = _noise((n, *self.latent_shape), generator, self.device)
        if labels is not None:
            labels = labels.to(self.device)
        mean, _ = self.decoder_params(z, labels)
        return mean.clamp(-1.0, 1.0).float()

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8, cond=None,
                    mode: str = "slerp") -> torch.Tensor:
        """Decode ``steps`` latents between the posterior means of images ``x_a`` and ``x_b``.

        Args:
            x_a, x_b: Images ``(C, H, W)`` or ``(1, C, H, W)`` in ``[-1, 1]``.
            steps: Number of images (>= 2); the first and last decode the two posterior means.
            cond: Optional label (class-conditional models) used for both encode and decode.
            mode: ``"slerp"`` (spherical; keeps the norm typical of Gaussian latents) or ``"linear"``.

        Returns:
            ``(steps, C, H, W)`` in ``[-1, 1]``.
        """
        if steps < 2:
            raise GenimageError(f"interpolate needs steps >= 2, got {steps}")
        if mode not in ("slerp", "linear"):
            raise GenimageError(f"mode must be 'slerp' or 'linear', got {mode!r}")
        xs = []
        for x in (x_a, x_b):
            x = x[None] if x.ndim == 3 else x
            if x.shape[0] != 1:
                raise GenimageError(f"interpolate takes single images, got a batch of {x.shape[0]}")
            xs.append(x.to(self.device))
        label = self.check_cond(1, cond)
        labels = None if label is None else label.to(self.device)
        ma = self.encoder(xs[0], labels)[0][0].float().flatten()
        mb = self.encoder(xs[1], labels)[0][0].float().flatten()
        t = torch.linspace(0.0, 1.0, steps, device=self.device)
        z = _slerp(ma, mb, t) if mode == "slerp" else (1 - t)[:, None] * ma + t[:, None] * mb
        z[0], z[-1] = ma, mb  # endpoints exactly the posterior means
        z = z.view(steps, *self.latent_shape)
        mean, _ = self.decoder_params(z, None if labels is None else labels.expand(steps))
        return mean.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ training
    def grad_accumulation_problem(self) -> str | None:
        if self.free_bits > 0:
            return ("free bits clamp the batch-mean KL per dimension, which is not a mean over micro-batches; "
                    "use a larger --batch-size or free_bits=0")
        return None

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """Minimise ``-ELBO / D`` (nats per dimension) with optional KL warm-up and free bits."""
        x = batch["image"]
        n, d = x.shape[0], x[0].numel()
        labels = _train_labels(self, batch, ctx, n)
        opt = ctx.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            mean, logvar = self.encoder(x, labels)
            mean, logvar = mean.float(), logvar.float()
            eps = torch.randn(mean.shape, generator=ctx.generator, device=ctx.generator.device).to(x.device)
            z = mean + torch.exp(0.5 * logvar) * eps
            rec = self.reconstruction_log_prob(x, z, labels)
        kl = gaussian_kl_standard(mean, logvar).flatten(1)
        kl_sum = kl.sum(1)
        if self.free_bits > 0:
            kl_term = kl.mean(0).clamp_min(self.free_bits).sum()
        else:
            kl_term = kl_sum.mean()
        beta = min(1.0, (ctx.step + 1) / self.kl_warmup_steps) if self.kl_warmup_steps else 1.0
        loss = (-rec.mean() + beta * kl_term) / d
        ctx.backward(loss)
        ctx.clip(self.parameters())
        opt.step()
        elbo = (rec - kl_sum).detach()
        return {"loss": float(loss.detach()), "bpd": float(-elbo.mean() / (d * math.log(2.0))),
                "kl": float(kl_sum.detach().mean()), "rec_nll": float(-rec.detach().mean()), "beta": beta}


# ---------------------------------------------------------------------------------------- KL autoencoder
class _AENet(nn.Module):
    """Encoder + decoder + the ``scale_factor`` buffer (the EMA'd, saved part of the autoencoder)."""

    def __init__(self, cfg: ConvAEConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("scale_factor", torch.ones(()))


class KLAutoencoder(GenerativeModel):
    """KL-regularised autoencoder, the first stage of latent diffusion (module docstring).

    ``config.backbone_config`` holds :class:`ConvAEConfig` keys (``latent="spatial"``) plus
    ``kl_weight`` (default 1e-6), ``l2_weight`` (extra MSE term, default 0), ``discriminator``
    (PatchGAN on/off), ``disc_start`` (first step of the GAN loss), ``disc_weight``,
    ``disc_adaptive`` (VQGAN's gradient-norm balancing), ``disc_width``, ``disc_layers``,
    ``disc_lr_scale`` (discriminator lr / main lr) and ``scale_momentum`` (of the running
    latent-variance estimate behind ``scale_factor``).

    The loss per step is ``mean|x - x^| + l2_weight * mean(x - x^)^2 + kl_weight * KL / D``,
    i.e. LDM's per-image sums (``sum|x - x^| + 1e-6 KL``) divided by the pixel count ``D``, so
    the KL weight keeps LDM's meaning while the loss stays O(1). Labels are ignored (the
    autoencoder is class-agnostic).
    """

    family = "autoencoder"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        cfg = _network_config(config, dict(AE_SETTINGS))
        cfg.num_classes = 0
        if cfg.latent != "spatial":
            raise GenimageError(
                "the autoencoder family needs latent='spatial' (latent diffusion denoises feature maps)")
        self.net_config = cfg
        ex = cfg.extra
        self.kl_weight = float(ex["kl_weight"])
        self.l2_weight = float(ex["l2_weight"])
        self.disc_start = int(ex["disc_start"])
        self.disc_weight = float(ex["disc_weight"])
        self.disc_adaptive = bool(ex["disc_adaptive"])
        self.disc_lr_scale = float(ex["disc_lr_scale"])
        self.scale_momentum = float(ex["scale_momentum"])
        if self.kl_weight < 0 or self.l2_weight < 0 or self.disc_weight < 0:
            raise GenimageError("kl_weight, l2_weight and disc_weight must be >= 0")
        if not 0 <= self.scale_momentum < 1:
            raise GenimageError(f"scale_momentum must be in [0, 1), got {self.scale_momentum}")
        self.ae = _AENet(cfg)
        self.disc = (PatchDiscriminator(cfg.channels, int(ex["disc_width"]), int(ex["disc_layers"]))
                     if ex["discriminator"] else None)

    # ------------------------------------------------------------------ API
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(latent_channels, H / f, W / f)``."""
        return self.net_config.latent_shape  # type: ignore[return-value]

    @property
    def scale_factor(self) -> float:
        return float(self.ae.scale_factor)

    def _check_images(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise GenimageError(f"images must have shape (B, {', '.join(map(str, self.image_shape))}), "
                                f"got {tuple(x.shape)}")

    def _check_canvas(self, x: torch.Tensor, channels: int, what: str) -> None:
        f = self.image_shape[-1] // self.latent_shape[-1]
        if x.ndim != 4 or x.shape[1] != channels or x.shape[-1] % f or x.shape[-2] % f:
            raise GenimageError(f"{what} must have shape (B, {channels}, H, W) with H, W multiples of {f}, "
                                f"got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor, generator: Generators = None, sample: bool = False,
               any_size: bool = False) -> torch.Tensor:
        """Scaled latents ``scale_factor * z`` of images ``x`` in ``[-1, 1]``.

        ``z`` is the posterior mean, or with ``sample=True`` a draw ``mean + std * eps``
        (``eps`` from ``generator``: one, one per image, or ``None``). ``any_size``: accept
        any ``H x W`` that is a multiple of the downsampling factor (the network is
        convolutional; used for canvases larger than the model, :mod:`genimage.editing.windows`).
        """
        if any_size:
            self._check_canvas(x, self.image_shape[0], "images")
        else:
            self._check_images(x)
        mean, logvar = self.ae.encoder(x)
        z = mean
        if sample:
            z = mean + torch.exp(0.5 * logvar) * _noise(tuple(mean.shape), generator, mean.device)
        return z * self.ae.scale_factor

    def decode(self, latents: torch.Tensor, any_size: bool = False) -> torch.Tensor:
        """Images in ``[-1, 1]`` from scaled latents ``(B, *latent_shape)`` (``any_size``:
        ``(B, latent_channels, h, w)`` of any ``h x w``)."""
        if any_size:
            if latents.ndim != 4 or latents.shape[1] != self.latent_shape[0]:
                raise GenimageError(f"latents must have shape (B, {self.latent_shape[0]}, h, w), "
                                    f"got {tuple(latents.shape)}")
        elif latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            raise GenimageError(f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), "
                                f"got {tuple(latents.shape)}")
        return self.ae.decoder(latents / self.ae.scale_factor).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))`` with the posterior mean."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruction_psnr(self, images: torch.Tensor, batch_size: int = 256) -> float:
        """Mean over images of the PSNR (dB) of the posterior-mean reconstruction, with pixels
        on the ``[0, 1]`` scale: ``10 log10(1 / MSE)`` per image (capped at 100 dB)."""
        self._check_images(images)
        vals = []
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device)
            rec = self.reconstruct(chunk)
            mse = (((rec - chunk) / 2.0).float().square()).flatten(1).mean(1).clamp_min(1e-10)
            vals.append(-10.0 * torch.log10(mse))
        return float(torch.cat(vals).mean())

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor | Iterable[Any], batch_size: int = 256) -> float:
        """Set ``scale_factor = 1 / std`` of the posterior-mean latents of ``images`` (a
        ``(N, C, H, W)`` tensor, or an iterable of image tensors / ``{"image": ...}`` batches),
        so that :meth:`encode` returns latents of unit std on that data. Returns the factor."""
        chunks = images.split(batch_size) if isinstance(images, torch.Tensor) else images
        total, s1, s2 = 0, torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for chunk in chunks:
            if isinstance(chunk, dict):
                chunk = chunk["image"]
            chunk = chunk.to(self.device)
            self._check_images(chunk)
            z = self.ae.encoder(chunk)[0].double().cpu()
            total += z.numel()
            s1 += z.sum()
            s2 += z.square().sum()
        if total < 2:
            raise GenimageError("calibrate needs at least one image")
        var = (s2 - s1 * s1 / total) / (total - 1)
        factor = 1.0 / math.sqrt(max(float(var), 1e-12))
        self.ae.scale_factor.fill_(factor)
        return factor

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator: Generators = None) -> torch.Tensor:
        """Decode ``n`` standard normal *scaled* latents (labels in ``cond`` are ignored).

        Not a sample of the image distribution: the KL term (weight 1e-6) only loosely ties
        the latents to ``N(0, I)``, so the result shows what the decoder makes of latent
        noise (textures and colour blobs). It exists so the generic trainer's preview grid
        and ``genimage sample`` run; real images come from a latent diffusion model trained
        on :meth:`encode`'s latents and decoded with :meth:`decode`.
        """
        z = _noise((n, *self.latent_shape), generator, self.device)
        return self.decode(z).float()

    # ------------------------------------------------------------------ training
    def ema_module(self) -> nn.Module:
        return self.ae

    def load_sampling_state(self, state: dict[str, torch.Tensor]) -> None:
        _load_sampling_state(self, state)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """AdamW with betas (0.5, 0.9) for the autoencoder and, when enabled, the
        discriminator (its lr scaled by ``disc_lr_scale``), as LDM's first stage uses."""
        opts = {"main": torch.optim.AdamW(self.ae.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.5, 0.9))}
        if self.disc is not None:
            opts["disc"] = torch.optim.AdamW(
                [{"params": list(self.disc.parameters()), "lr_scale": self.disc_lr_scale}],
                lr=lr * self.disc_lr_scale, weight_decay=weight_decay, betas=(0.5, 0.9))
        return opts

    def _update_scale(self, mean: torch.Tensor, first: bool) -> None:
        var = float(mean.detach().float().var())
        old = 1.0 / float(self.ae.scale_factor) ** 2
        new = var if first else self.scale_momentum * old + (1 - self.scale_momentum) * var
        self.ae.scale_factor.fill_(1.0 / math.sqrt(max(new, 1e-12)))

    def grad_accumulation_problem(self) -> str | None:
        return ("the autoencoder's latent scale follows each batch's variance and its discriminator steps after "
                "the autoencoder, so micro-batches are not one larger batch; use a larger --batch-size")

    def training_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x = batch["image"]
        d = x[0].numel()
        gan = self.disc is not None and ctx.step >= self.disc_start
        opt = ctx.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        if self.disc is not None:
            self.disc.requires_grad_(False)
        with ctx.autocast():
            mean, logvar = self.ae.encoder(x)
            mean, logvar = mean.float(), logvar.float()
            eps = torch.randn(mean.shape, generator=ctx.generator, device=ctx.generator.device).to(x.device)
            xr = self.ae.decoder(mean + torch.exp(0.5 * logvar) * eps).float()
            g_loss = -self.disc(xr).float().mean() if gan else None
        err = xr - x
        rec = err.abs().mean() + (self.l2_weight * err.square().mean() if self.l2_weight else 0.0)
        kl = gaussian_kl_standard(mean, logvar).flatten(1).sum(1).mean()
        loss = rec + self.kl_weight * kl / d
        metrics: dict[str, float] = {}
        if gan:
            weight = torch.tensor(self.disc_weight)
            if self.disc_adaptive:
                last = self.ae.decoder.last_layer
                g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
                g_gan = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
                weight = self.disc_weight * (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()
            loss = loss + weight * g_loss
            metrics.update(g_loss=float(g_loss.detach()), disc_weight=float(weight))
        ctx.backward(loss)
        ctx.clip(self.ae.parameters())
        opt.step()
        self._update_scale(mean, first=ctx.step == 0)
        if gan:
            self.disc.requires_grad_(True)
            dopt = ctx.optimizers["disc"]
            dopt.zero_grad(set_to_none=True)
            with ctx.autocast():
                real, fake = self.disc(x).float(), self.disc(xr.detach()).float()
            d_loss = F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()  # hinge loss
            ctx.backward(d_loss)
            ctx.clip(self.disc.parameters())
            dopt.step()
            metrics["d_loss"] = float(d_loss.detach())
        mse = (err.detach() / 2.0).square().flatten(1).mean(1).clamp_min(1e-10)
        return {"loss": float(loss.detach()), "l1": float(err.detach().abs().mean()), "kl": float(kl.detach()),
                "psnr": float((-10.0 * torch.log10(mse)).mean()), "scale_factor": self.scale_factor, **metrics}


# ---------------------------------------------------------------------------------------- registration
VAE_PRESETS: dict[str, dict[str, Any]] = {
    # digits 8x8x1: 8x8 -> 4x4 feature map -> 4-d flat latent. A small flat latent gave the
    # most recognizable prior samples in 3-minute CPU runs (confident fraction, unconditional:
    # latent_dim 16: 0.72, 8: 0.77, 4: 0.86) at a small cost in bits/dim (3.59, 3.55, 3.61).
    "tiny": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "groups": 8, "downsample": 2,
             "latent": "flat", "latent_dim": 4, "cond_dim": 64, "decoder_scale": "channel",
             "kl_warmup_steps": 0, "free_bits": 0.0},
    # 32x32 RGB: 32 -> 4x4 feature map -> 128-d flat latent
    "small": {"base_channels": 64, "channel_mult": [1, 2, 2, 4], "num_res_blocks": 1, "groups": 16,
              "downsample": 8, "latent": "flat", "latent_dim": 128, "cond_dim": 128, "decoder_scale": "channel",
              "kl_warmup_steps": 0, "free_bits": 0.0},
}

AE_PRESETS: dict[str, dict[str, Any]] = {
    # digits 8x8x1 -> 4x4x2 (tests and quick runs)
    "tiny": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "groups": 8, "downsample": 2,
             "latent": "spatial", "latent_channels": 2, "kl_weight": 1e-6, "discriminator": False},
    # 32x32 RGB -> 8x8x4 (widths 16/32/64: sized for CPU training; the PatchGAN joins at step 5000)
    "f4": {"base_channels": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "groups": 8, "downsample": 4,
           "latent": "spatial", "latent_channels": 4, "kl_weight": 1e-6, "l2_weight": 0.0,
           "discriminator": True, "disc_start": 5000, "disc_weight": 0.5, "disc_adaptive": True},
    # 32x32 RGB -> 4x4x8
    "f8": {"base_channels": 16, "channel_mult": [1, 2, 4, 4], "num_res_blocks": 1, "groups": 8, "downsample": 8,
           "latent": "spatial", "latent_channels": 8, "kl_weight": 1e-6, "l2_weight": 0.0,
           "discriminator": True, "disc_start": 5000, "disc_weight": 0.5, "disc_adaptive": True},
}

register_family(FamilySpec(
    name="vae", model_cls=VAE, presets=VAE_PRESETS,
    description="variational autoencoder (Kingma & Welling 2014), discretized-logistic decoder; ELBO bits/dim",
    train_defaults={"lr": 1e-3, "batch_size": 64, "warmup_steps": 100, "ema_decay": 0.999},
    conditioning=("label", "none"),
))

register_family(FamilySpec(
    name="autoencoder", model_cls=KLAutoencoder, presets=AE_PRESETS,
    description="KL autoencoder for latent diffusion (Rombach et al. 2022): L1 + 1e-6 KL (+ PatchGAN)",
    train_defaults={"lr": 5e-4, "batch_size": 32, "warmup_steps": 100, "ema_decay": 0.999},
    conditioning=("none",),
))
