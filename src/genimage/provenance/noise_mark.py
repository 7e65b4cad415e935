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
independent of each other: the batch's noise mean moves to the orthant's centre, which shows as
a higher FD (``benchmarks/noise_watermark_pixel.py`` reports FD with and without). ``patterns =
M > 1`` spreads images over ``M`` keyed sign patterns (the keystream's nonce is the pattern
index, chosen per image by a keyed hash of its own noise magnitudes, so replay picks the same);
the shared mean shrinks by ``1/sqrt(M)``. The detector scores every pattern and keeps the best,
which raises unmarked scores by about ``sqrt(2 ln M)``: a trade measured, not assumed.

Where the trade was measured to favour the mark (``photos-pixel``: found in every unattacked
image with ``M = 65536``, FD and recall unchanged), the model's ``config.json`` turns it on by
default (``noise_mark: {"patterns": M}``, :func:`default_patterns`). The ``M`` patterns are
scored in chunks by matrix products (:func:`best_patterns`), so ``M = 2**16`` is practical.
:mod:`genimage.provenance.noise_calibration` sets the detection threshold on unmarked samples.

Reading an attacked image: the noise inverted from a JPEG-compressed, noisier or regenerated image
is the original plus error, and the linear correlation of the noise with the pattern
(``soft=True`` in :func:`score_noise`) reads it better than sign agreement; the noise of a
rotated, cropped or blurred image is read under a search over those changes
(:mod:`genimage.provenance.noise_sync`). ``genimage detect --invert`` does both.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import torch

from genimage.errors import GenimageError

if TYPE_CHECKING:
    from genimage.provenance.noise_sync import Hypothesis

DETECTION_Z = 3.0902  # one-sided p = 1e-3, as the other marks
METHOD = "gaussian-shading"


def _cipher_key(key: str) -> bytes:
    return hashlib.sha256(f"gaussian-shading|{key}".encode("utf-8")).digest()


def keystream_bits(key: str, n: int, pattern: int = 0) -> torch.Tensor:
    """``n`` pseudo-random bits (0/1, uint8) of ChaCha20 keyed by sha256(``key``), nonce = ``pattern``."""
    return torch.from_numpy(_keystreams(_cipher_key(key), n, int(pattern), 1)[0])


def _keystreams(k: bytes, n: int, first: int, count: int) -> "np.ndarray":
    """Keystream bits ``(count, n)`` uint8 of nonces ``first .. first + count - 1``."""
    import numpy as np
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    zeros = b"\x00" * ((n + 7) // 8)
    raw = b"".join(Cipher(algorithms.ChaCha20(k, j.to_bytes(16, "little")), mode=None).encryptor().update(zeros)
                   for j in range(first, first + count))
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(count, -1), axis=1)[:, :n]


def message_bits(message: bytes) -> torch.Tensor:
    m = torch.frombuffer(bytearray(message), dtype=torch.uint8)
    return ((m[:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)) & 1).flatten()


def target_bits(key: str, message: bytes, shape: tuple[int, ...], pattern: int = 0) -> torch.Tensor:
    """The sign bits ``m`` ``shape`` (per-sample noise shape ``(C, H, W)``): message repeated, XOR
    the keystream of sign pattern ``pattern``."""
    rep = _repeated_message(message, math.prod(shape))
    return (rep ^ keystream_bits(key, len(rep), pattern)).reshape(shape)


def pattern_index(key: str, eps: torch.Tensor, patterns: int) -> torch.Tensor:
    """Per image of ``eps`` ``(B, ...)``, which of ``patterns`` sign patterns it gets: a keyed
    sha256 of its noise magnitudes (which shading keeps), so the same seed picks the same one."""
    if patterns < 1:
        raise GenimageError(f"patterns must be at least 1, got {patterns}")
    if patterns == 1:
        return torch.zeros(len(eps), dtype=torch.long)
    mags = eps.detach().abs().float().cpu().numpy()
    tag = f"gaussian-shading-pattern|{key}|".encode("utf-8")
    return torch.tensor([int.from_bytes(hashlib.sha256(tag + row.tobytes()).digest()[:8], "little") % patterns
                         for row in mags], dtype=torch.long)


def shade(eps: torch.Tensor, key: str, message: bytes, patterns: int = 1) -> torch.Tensor:
    """Noise ``(B, C, H, W)`` with the signs the key, message and each image's pattern select (step 2)."""
    shape = tuple(eps.shape[1:])
    idx = pattern_index(key, eps, patterns)
    m = torch.stack([target_bits(key, message, shape, int(j)) for j in idx]).to(eps.device)
    return eps.abs() * (m.to(eps.dtype) * 2 - 1)


def record_entry(key: str | None = None, message: bytes | None = None, patterns: int = 1) -> dict:
    """The generation record's ``noise_mark`` entry (the key itself is never recorded, only its
    id): ``{"method", "key_id", "message"}`` plus ``"patterns"`` when more than one."""
    from genimage.provenance.dwtdct import default_message
    from genimage.provenance.watermark import key_id, watermark_key

    key = key or watermark_key()
    message = message if message is not None else default_message(key)
    entry = {"method": METHOD, "key_id": key_id(key), "message": message.hex()}
    if patterns != 1:
        entry["patterns"] = int(patterns)
    return entry


def default_patterns(config) -> int:
    """How many sign patterns a model's noise mark uses: its config's ``noise_mark["patterns"]``
    (:class:`genimage.models.config.ModelConfig`), else 1."""
    patterns = int((config.noise_mark or {}).get("patterns", 1))
    if patterns < 1:
        raise GenimageError(f"config.json: noise_mark patterns must be at least 1, got {patterns}")
    return patterns


def model_entry(config) -> dict:
    """The record entry of a model's noise mark with the current key and the model's patterns."""
    return record_entry(patterns=default_patterns(config))


def apply_entry(eps: torch.Tensor, entry: dict | None) -> torch.Tensor:
    """The initial noise as a record's ``noise`` entry says (``None``: unchanged)."""
    if not entry:
        return eps
    from genimage.provenance.watermark import recorded_key

    key = recorded_key(entry, "noise watermark")
    if entry.get("method") != METHOD:
        raise GenimageError(f"unknown noise watermark {entry.get('method')!r}; this genimage knows {METHOD}")
    return shade(eps, key, bytes.fromhex(entry["message"]), int(entry.get("patterns", 1)))


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


def _repeated_message(message: bytes, n: int) -> torch.Tensor:
    s = message_bits(message)
    if len(s) == 0 or len(s) > n:
        raise GenimageError(f"a {len(s)}-bit message does not fit in noise of {n} elements")
    return s.repeat((n + len(s) - 1) // len(s))[:n]


def _sign_products(signs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``signs @ targets.T`` of int8 matrices (entries -1, 0, +1) as exact int32: an integer
    matrix product where torch has one (``torch._int_mm``, about 6x the float product on this
    CPU), else the float product (exact, as every sum is an integer below 2**24)."""
    try:
        return torch._int_mm(signs, targets.T)
    except (AttributeError, RuntimeError, NotImplementedError):
        return (signs.float() @ targets.float().T).round().to(torch.int32)


def best_patterns(signs: torch.Tensor, key: str, message: bytes, patterns: int = 1,
                  chunk: int = 4096, rows: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``signs`` ``(B, n)`` (+1 / -1, or 0 where an element is not read), the sign
    agreement with the best of the ``patterns`` keyed sign patterns (the fraction of the row's
    read elements whose sign equals the pattern's) and that pattern's index, both ``(B,)``.
    See :func:`best_products`."""
    s8 = signs.to(torch.int8)
    dot, idx = best_products(s8, key, message, patterns, chunk, rows)
    read = (s8 != 0).sum(1).clamp(min=1).double()
    return (dot.double() + read) / (2 * read), idx


def best_products(values: torch.Tensor, key: str, message: bytes, patterns: int = 1,
                  chunk: int = 4096, rows: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``values`` ``(B, n)`` (int8), the largest product ``values . (2 m_j - 1)`` over
    the ``patterns`` keyed sign patterns ``m_j`` (int64) and its ``j``, both ``(B,)``.

    The patterns are made ``chunk`` at a time (ChaCha20, one nonce each) and compared by one
    integer matrix product per chunk and ``rows`` rows, so ``patterns = 2**16`` over 3,072
    elements costs about a second for a batch, not ``patterns`` Python iterations."""
    import numpy as np

    b, n = values.shape
    v8 = values.to(torch.int8).contiguous()
    rep = _repeated_message(message, n).numpy()
    k = _cipher_key(key)
    best = torch.full((b,), -(2**31) + 1, dtype=torch.int32)
    idx = torch.zeros(b, dtype=torch.long)
    for first in range(0, patterns, chunk):
        count = min(chunk, patterns - first)
        bits = np.bitwise_xor(_keystreams(k, n, first, count), rep[None])  # (count, n) target bits m
        target = torch.from_numpy(bits.astype(np.int8) * 2 - 1)
        for r in range(0, b, rows):
            val, arg = _sign_products(v8[r:r + rows], target).max(1)
            better = val > best[r:r + rows]
            best[r:r + rows] = torch.where(better, val, best[r:r + rows])
            idx[r:r + rows] = torch.where(better, arg + first, idx[r:r + rows])
    return best.long(), idx


SOFT_LEVELS = 32  # int8 steps per standard deviation of the inverted noise (soft scoring)


def score_noise(noise: torch.Tensor, key: str, message: bytes, patterns: int = 1,
                read: torch.Tensor | None = None, soft: bool = False) -> dict:
    """Scores of inverted noise ``(B, C, H, W)``: ``z`` (B,), sign ``agreement`` (B,),
    ``bit_accuracy`` (B,) of the decoded message, and the best-agreeing ``pattern`` (B,) of
    ``patterns`` (each image is scored against every pattern; the best one is kept).

    ``z = w . (2 m - 1) / ||w||``: with ``w`` the signs of the noise (``soft=False``, the
    paper's reading: ``z = (a - 1/2) * 2 sqrt(n)`` for agreement ``a``), or the noise itself
    (``soft=True``: the linear correlation, the matched filter for noise that an attack made
    Gaussian-noisier; it keeps how sure each element is, and measured on ``photos-pixel`` it
    finds the mark after JPEG 50 in 0.86 of images where signs find 0.36, BENCHMARKS.md). Both
    are standard normal for an image without this pattern. Soft values are rounded to int8 at
    ``SOFT_LEVELS`` steps per standard deviation for the integer matrix product. The message is
    decoded by each bit's summed evidence (for signs: the majority).

    ``read`` (bool, broadcastable to ``noise``) marks the elements that carry the image's noise
    (:mod:`genimage.provenance.noise_sync`: a rotated or cropped image leaves some out); only
    those are scored. Default: every element."""
    q, got, mask = _readings(noise, read, soft)
    dot, best = best_products(q, key, message, patterns)
    agree, bit_accuracy = _decoded(q, got, mask, best, key, message)
    return {"z": _z(dot, q), "agreement": agree, "bit_accuracy": bit_accuracy, "pattern": best}


def _readings(noise: torch.Tensor, read: torch.Tensor | None, soft: bool):
    """Per row of ``noise`` ``(R, ...)``: the int8 values ``w`` scored (signs or rounded noise,
    0 where not read), the sign bits and the read mask, each ``(R, n)`` (see :func:`score_noise`)."""
    b = len(noise)
    flat = noise.flatten(1).float()
    n = flat.shape[1]
    mask = (torch.ones(b, n, dtype=torch.bool) if read is None
            else read.expand_as(noise).reshape(b, n).bool())
    got = (flat > 0).to(torch.uint8)
    if soft:
        w = flat * mask
        sd = (w.pow(2).sum(1) / mask.sum(1).clamp(min=1)).sqrt().clamp(min=1e-12)
        q = (w * (SOFT_LEVELS / sd)[:, None]).round().clamp(-127, 127).to(torch.int8)
    else:
        q = (got.to(torch.int8) * 2 - 1) * mask.to(torch.int8)
    return q, got, mask


def _z(dot: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``z = w . (2 m - 1) / ||w||`` per row."""
    return (dot.double() / q.double().pow(2).sum(1).sqrt().clamp(min=1)).float()


def _decoded(q: torch.Tensor, got: torch.Tensor, mask: torch.Tensor, best: torch.Tensor, key: str,
             message: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the sign agreement with pattern ``best`` over the read elements, and the bit
    accuracy of the message decoded by each bit's summed evidence."""
    b, n = q.shape
    s = message_bits(message)
    k = len(s)
    streams = torch.stack([keystream_bits(key, n, int(j)) for j in best])
    rep = _repeated_message(message, n)
    agree = ((got == (rep[None] ^ streams)) & mask).sum(1).double() / mask.sum(1).clamp(min=1)
    evidence = q.float() * (1 - 2 * streams.float())  # > 0: the repeated message bit reads 1
    idx = torch.arange(n) % k
    bits = (torch.zeros(b, k).index_add_(1, idx, evidence) > 0).to(torch.uint8)
    return agree.float(), (bits == s[None]).float().mean(1)


def invert_images(pipe, images: torch.Tensor, steps: int | None = None, batch_size: int = 100,
                  decoder_steps: int = 0, label_search: bool = False, guidance: float | None = None,
                  decoder_lr: float = 0.02) -> torch.Tensor:
    """The initial noise ``pipe``'s sampler would have started from to make ``images``.

    Returns ``(K, B, C, H, W)``: ``K = 1`` (null label or empty prompt, no guidance), or with
    ``label_search`` one inversion per class (``K = num_classes``, guided). See :func:`detect`;
    ``decoder_lr`` is the Adam step of :func:`invert_decoder` (in latent units: an autoencoder
    whose latents are far from unit scale needs a larger one).
    """
    from genimage.samplers.timesteps import make_schedule

    ae = None
    if pipe.config.autoencoder:
        from genimage.latent.autoencoder import attached_autoencoder

        ae = attached_autoencoder(pipe.loaded.denoiser)
    if label_search and not pipe.conditioner.uses_labels:
        raise GenimageError("label_search needs a class-conditional model; this one has no class labels")
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
            x = ae.model.to(dev).encode(x.float())  # the posterior mean (genimage's and SD's default)
            if decoder_steps:
                x = invert_decoder(ae.model, images[i:i + batch_size].to(dev).float(), x, decoder_steps, decoder_lr)
        if label_search:
            conds = [pipe.conditioner(labels=[label] * len(x), batch=len(x)) for label in range(pipe.config.num_classes)]
        else:
            conds = [pipe.conditioner(labels=[None] * len(x) if pipe.conditioner.uses_labels else None,
                                      captions=[""] * len(x) if pipe.conditioner.uses_text else None, batch=len(x))]
        out.append(torch.stack([invert(model, x, ts, None if c is None else {k: v.to(dev) for k, v in c.items()}).cpu()
                                for c in conds]))
    return torch.cat(out, 1)


def score_candidates(noises: torch.Tensor, key: str, message: bytes, patterns: int = 1,
                     read: torch.Tensor | None = None, soft: bool = False) -> dict:
    """:func:`score_noise` of each candidate inversion ``(K, B, C, H, W)`` (all ``K * B`` rows in
    one pass over the patterns; the message is decoded only from the kept candidate); per image
    the candidate with the highest ``z`` is kept (its
    index is ``"candidate"`` when ``K > 1``). ``read`` ``(K, C or 1, H, W)``: each candidate's
    scored elements (default: all). ``soft``: see :func:`score_noise`."""
    kk, b = noises.shape[:2]
    flat_read = None if read is None else read[:, None].expand(kk, b, *read.shape[1:]).flatten(0, 1)
    q, got, mask = _readings(noises.flatten(0, 1), flat_read, soft)
    dot, best = best_products(q, key, message, patterns)
    z = _z(dot, q).reshape(kk, b)
    pick = z.argmax(0)
    rows = pick * b + torch.arange(b)  # each image's best candidate: only these are decoded
    agree, bit_accuracy = _decoded(q[rows], got[rows], mask[rows], best[rows], key, message)
    out = {"z": z.gather(0, pick[None])[0], "agreement": agree, "bit_accuracy": bit_accuracy, "pattern": best[rows]}
    if kk > 1:
        out["candidate"] = pick
    return out


def score_inverted(noises: torch.Tensor, key: str, message: bytes, patterns: int = 1,
                   sync: "list[Hypothesis] | None" = None, soft: bool = False, chunk: int = 100) -> dict:
    """:func:`score_candidates` of inversions ``(K, B, C, H, W)``, each warped back under every
    hypothesis of ``sync`` first (:func:`genimage.provenance.noise_sync.synchronised`; ``None``:
    read as they are), ``chunk`` images at a time: every image is scored on its own, and the
    129 warped copies of a few hundred images at 64 px would not fit in memory at once."""
    from genimage.provenance.noise_sync import synchronised

    parts = []
    for i in range(0, noises.shape[1], chunk):
        part, read = noises[:, i:i + chunk], None
        if sync:
            part, read = synchronised(part, sync)
        parts.append(score_candidates(part, key, message, patterns, read, soft))
    return {k: torch.cat([q[k] for q in parts]) for k in parts[0]}


def detect(pipe, images: torch.Tensor, key: str | None = None, message: bytes | None = None,
           steps: int | None = None, batch_size: int = 100, decoder_steps: int = 0,
           label_search: bool = False, guidance: float | None = None, patterns: int = 1,
           sync: "list[Hypothesis] | None" = None, soft: bool = False, decoder_lr: float = 0.02) -> dict:
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
            ``decoder_lr`` is their step (larger for latents far from unit scale).
        label_search: For a class-conditional model (default ``False``: invert with the null
            label and no guidance, as DDIM inversion with the empty prompt): invert once per
            class with classifier-free guidance ``guidance`` and keep, per image, the class
            whose noise agrees best with the mark (the label is unknown to a detector; a
            guided sample is better inverted with guidance, Mokady et al. 2023). The maximum
            over classes raises the unmarked scores too, so calibrate the threshold on
            unmarked images (``benchmarks/noise_watermark_pixel.py`` measures it).
        guidance: Guidance of the label-search inversion; default the model's sampling guidance.
        patterns: How many keyed sign patterns the marked images were spread over (the
            record's ``patterns``); every one is scored and the best kept.
        sync: Geometric hypotheses (:func:`genimage.provenance.noise_sync.hypotheses`): the
            inverted noise is warped back under each (a rotation, a centred crop) and the best
            kept, so a rotated or cropped image is still read. ``None``: as the image is.
        soft: Score the linear correlation of the noise itself, not of its signs
            (:func:`score_noise`): more robust to JPEG, noise and regeneration.

    Returns:
        ``{"z", "agreement", "bit_accuracy", "pattern"}`` (each ``(B,)``, see :func:`score_noise`),
        plus ``"label"`` ``(B,)`` (the best class) with ``label_search``, and ``"hypothesis"``
        (a list of the best :class:`~genimage.provenance.noise_sync.Hypothesis` per image) with
        ``sync``.
    """
    from genimage.provenance.dwtdct import default_message
    from genimage.provenance.watermark import watermark_key

    key = key or watermark_key()
    message = message if message is not None else default_message(key)
    noises = invert_images(pipe, images, steps, batch_size, decoder_steps, label_search, guidance, decoder_lr)
    out = score_inverted(noises, key, message, patterns, sync, soft, batch_size)
    cand = out.pop("candidate", torch.zeros(len(images), dtype=torch.long))
    per = len(sync) if sync else 1
    if label_search:
        out["label"] = cand // per
    if sync:
        out["hypothesis"] = [sync[int(c) % per] for c in cand]
    return out
