"""A watermark in the initial noise, found by inverting the sampler: Gaussian Shading.

Implements Gaussian Shading (Yang et al. 2024, "Gaussian Shading: Provable Performance-Lossless
Image Watermarking for Diffusion Models", Sec. 3) with one bit per noise element (``l = 1``):

1. The ``k``-bit message ``s`` is repeated to fill the noise tensor ``(C, H, W)`` (their
   "diffusion" of ``s``), then XORed with a keystream (ChaCha20 keyed by sha256 of the key, as
   the paper does, through the ``cryptography`` package), giving bits ``m`` that look uniform.
2. Each initial-noise element is drawn from the standard normal truncated to the half that
   ``m`` selects: ``z = |eps| * (2 m - 1)`` with ``eps`` the seed's ordinary noise. As ``m`` is
   uniform and independent of ``|eps|``, each ``z`` is still exactly ``N(0, 1)`` (their
   Theorem 1: no change of the image distribution for a random key).
3. Detection inverts the deterministic ODE sampler from the image back to noise
   (:func:`invert`: the Euler steps of the probability-flow ODE run from ``t = 0`` up to the
   schedule's start, with the empty prompt and no guidance, as DDIM inversion does),
   reads ``m' = [z' > 0]``, and scores the fraction ``a`` of elements agreeing with ``m``:
   ``z = (a - 1/2) * 2 sqrt(n)``, about standard normal for unmarked images. The decoded
   message is the majority over each bit's copies, XORed back.

Caveat measured, not assumed: with one key and one message, every image's noise has the same
signs. Each image is still a draw from the model's distribution, but two images are no longer
independent of each other (``benchmarks/noise_watermark.py`` reports FD with and without).
"""

from __future__ import annotations

import hashlib
import math

import torch

from genimage.errors import GenimageError

DETECTION_Z = 3.0902  # one-sided p = 1e-3, as the other marks
METHOD = "gaussian-shading"


def keystream_bits(key: str, n: int) -> torch.Tensor:
    """``n`` pseudo-random bits (0/1, uint8) of ChaCha20 keyed by sha256(``key``)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    k = hashlib.sha256(f"gaussian-shading|{key}".encode("utf-8")).digest()
    nonce = b"\x00" * 16
    enc = Cipher(algorithms.ChaCha20(k, nonce), mode=None).encryptor()
    raw = enc.update(b"\x00" * ((n + 7) // 8))
    bits = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return ((bits[:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1).flatten()[:n]


def message_bits(message: bytes) -> torch.Tensor:
    m = torch.frombuffer(bytearray(message), dtype=torch.uint8)
    return ((m[:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1).flatten()


def target_bits(key: str, message: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    """The sign bits ``m`` ``shape`` (per-sample noise shape ``(C, H, W)``): message repeated, XOR keystream."""
    n = math.prod(shape)
    s = message_bits(message)
    if len(s) == 0 or len(s) > n:
        raise GenimageError(f"a {len(s)}-bit message does not fit in noise of {n} elements")
    rep = s.repeat((n + len(s) - 1) // len(s))[:n]
    return (rep ^ keystream_bits(key, n)).reshape(shape)


def shade(eps: torch.Tensor, key: str, message: bytes) -> torch.Tensor:
    """Noise ``(B, C, H, W)`` with the signs the key and message select (step 2)."""
    m = target_bits(key, message, tuple(eps.shape[1:])).to(eps.device)
    return eps.abs() * (m.to(eps.dtype) * 2 - 1)


def apply_entry(eps: torch.Tensor, entry: dict | None) -> torch.Tensor:
    """The initial noise as a record's ``noise`` entry says (``None``: unchanged)."""
    if not entry:
        return eps
    from genimage.provenance.watermark import recorded_key

    key = recorded_key(entry, "noise watermark")
    if entry.get("method") != METHOD:
        raise GenimageError(f"unknown noise watermark {entry.get('method')!r}; this genimage knows {METHOD}")
    return shade(eps, key, bytes.fromhex(entry["message"]))


@torch.no_grad()
def invert(model, x: torch.Tensor, timesteps: torch.Tensor, cond=None) -> torch.Tensor:
    """Run the probability-flow ODE backwards with Euler steps: image ``x`` at ``t = 0`` -> noise
    at ``timesteps[0]`` (DDIM inversion, Song et al. 2021 Sec. 4.3 / Mokady et al. 2023, written
    for any path: ``dx/dt = alpha'(t) x0 + sigma'(t) eps``).

    Args:
        model: Denoiser (``model(x, t, cond)`` -> prediction; ``model.path``).
        x: Images (or latents) ``(B, C, H, W)``.
        timesteps: The sampler's descending schedule, ending at 0.
        cond: Conditioning (``None`` or the empty prompt's).

    Returns:
        The noise ``x_T / sigma_T`` ``(B, C, H, W)`` (the unit-variance noise a sampler starts from).
    """
    from genimage.paths.conversions import PathCoefficients

    ts = torch.flip(timesteps, [0])
    path = model.path
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        pred = model(x, t, cond)
        c = PathCoefficients.at(path, t, ndim=1)
        x = (x.double() + float(t_next - t) * (float(c.d_alpha) * pred.x0.double() + float(c.d_sigma) * pred.eps.double())).float()
    return x / float(PathCoefficients.at(path, ts[-1], ndim=1).sigma)


def invert_decoder(autoencoder, images: torch.Tensor, latents: torch.Tensor, steps: int, lr: float = 0.02) -> torch.Tensor:
    """Latents whose decoding matches ``images``: ``argmin_z ||D(z) - x||^2`` by Adam from the
    encoder's ``latents`` (the decoder inversion of Hong et al. 2023, "On Exact Inversion of
    DPM-Solvers", Sec. 3.3; the encoder alone is too inexact for the ODE inversion that follows).
    """
    z = latents.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = ((autoencoder.decode(z) - images) ** 2).mean()
            loss.backward()
            opt.step()
    return z.detach()


def score_noise(noise: torch.Tensor, key: str, message: bytes) -> dict:
    """Scores of inverted noise ``(B, C, H, W)``: ``z`` (B,), sign ``agreement`` (B,), and
    ``bit_accuracy`` (B,) of the majority-decoded message."""
    shape = tuple(noise.shape[1:])
    m = target_bits(key, message, shape).flatten()
    got = (noise.flatten(1) > 0).to(torch.uint8)
    agree = (got == m).float().mean(1)
    n = m.numel()
    z = (agree - 0.5) * 2 * math.sqrt(n)
    s = message_bits(message)
    k = len(s)
    plain = got ^ keystream_bits(key, n)[None]  # the repeated message, as read
    idx = torch.arange(n) % k
    ones = torch.zeros(len(noise), k).index_add_(1, idx, plain.float())
    count = torch.bincount(idx, minlength=k).float()
    bits = (ones / count > 0.5).to(torch.uint8)
    return {"z": z, "agreement": agree, "bit_accuracy": (bits == s[None]).float().mean(1)}


def detect(pipe, images: torch.Tensor, key: str | None = None, message: bytes | None = None,
           steps: int | None = None, batch_size: int = 100, decoder_steps: int = 0,
           label_search: bool = False, guidance: float | None = None) -> dict:
    """Invert ``pipe``'s model from ``images`` ``(B, C, H, W)`` in ``[-1, 1]`` and score them.

    Args:
        pipe: A :class:`genimage.pipeline.Pipeline`; for a latent model the images go through
            its encoder (posterior mean) first.
        images: The images ``(B, C, H, W)`` at the model's image size.
        key: Watermark key; default ``$GENIMAGE_WATERMARK_KEY`` or the public default.
        message: Message; default :func:`genimage.provenance.dwtdct.default_message` of the key.
        steps: Inversion steps; default the model's sampling steps.
        batch_size: Images per network batch.
        decoder_steps: For a latent model, Adam steps refining the encoder's latents so the
            decoder reproduces the image (:func:`invert_decoder`); 0 uses the encoder alone.
        label_search: For a class-conditional model (default ``False``: invert with the null
            label and no guidance, as DDIM inversion with the empty prompt): invert once per
            class with classifier-free guidance ``guidance`` and keep, per image, the class
            whose noise agrees best with the mark (the label is unknown to a detector; a
            guided sample is better inverted with guidance, Mokady et al. 2023). The maximum
            over classes raises the unmarked scores too, so calibrate the threshold on
            unmarked images (``benchmarks/noise_watermark_pixel.py`` measures it).
        guidance: Guidance of the label-search inversion; default the model's sampling guidance.

    Returns:
        ``{"z", "agreement", "bit_accuracy"}`` (each ``(B,)``, see :func:`score_noise`), plus
        ``"label"`` ``(B,)`` (the best class) with ``label_search``.
    """
    from genimage.provenance.dwtdct import default_message
    from genimage.provenance.watermark import watermark_key
    from genimage.samplers.timesteps import make_schedule

    ae = None
    if pipe.config.autoencoder:
        from genimage.latent.autoencoder import attached_autoencoder

        ae = attached_autoencoder(pipe.loaded.denoiser)
    if label_search and not pipe.conditioner.uses_labels:
        raise GenimageError("label_search needs a class-conditional model; this one has no class labels")
    key = key or watermark_key()
    message = message if message is not None else default_message(key)
    o = pipe.options()
    ts = make_schedule(o.schedule, pipe.loaded.denoiser.path, steps or o.steps)
    dev = pipe.device
    model = pipe.loaded.denoiser
    if label_search:
        from genimage.conditioning.cfg import CFGDenoiser

        model = CFGDenoiser(model, o.guidance if guidance is None else guidance, interval=o.guidance_interval)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        if ae is not None:  # a latent model: the encoder's posterior mean first
            x = ae.model.to(dev).encode(x.float(), sample=False)
            if decoder_steps:
                x = invert_decoder(ae.model, images[i:i + batch_size].to(dev).float(), x, decoder_steps)
        if not label_search:
            cond = pipe.conditioner(labels=[None] * len(x) if pipe.conditioner.uses_labels else None,
                                    captions=[""] * len(x) if pipe.conditioner.uses_text else None, batch=len(x))
            cond = None if cond is None else {k: v.to(dev) for k, v in cond.items()}
            out.append(score_noise(invert(model, x, ts, cond).cpu(), key, message))
            continue
        per_class = []
        for label in range(pipe.config.num_classes):
            cond = pipe.conditioner(labels=[label] * len(x), batch=len(x))
            per_class.append(score_noise(invert(model, x, ts, {k: v.to(dev) for k, v in cond.items()}).cpu(), key,
                                         message))
        zs = torch.stack([r["z"] for r in per_class])
        best = zs.argmax(0)
        pick = lambda name: torch.stack([r[name] for r in per_class]).gather(0, best[None])[0]  # noqa: E731
        out.append({"z": pick("z"), "agreement": pick("agreement"), "bit_accuracy": pick("bit_accuracy"),
                    "label": best})
    return {k: torch.cat([r[k] for r in out]) for k in out[0]}
