"""A bit-carrying watermark that interoperates with the ``invisible-watermark`` library's
``dwtDct`` method (PyPI ``invisible-watermark``, module ``imwatermark``, the mark Stable
Diffusion's reference scripts apply).

This is genimage's own implementation of the same scheme, written from its description:

1. RGB -> YUV (BT.601 analog YUV as OpenCV's ``COLOR_BGR2YUV``: ``Y = .299R + .587G + .114B``,
   ``U = .492(B - Y) + 128``, ``V = .877(R - Y) + 128``); only ``U`` carries the mark (the
   library's default scales ``[0, 36, 36]`` skip ``Y``, and its loop stops before ``V``).
2. One level of the 2-D Haar DWT of ``U`` (cropped to a multiple of 4 pixels); only the
   approximation band is used, ``cA = (a + b + c + d) / 2`` over each 2x2 pixel block.
3. ``cA`` is cut into 4x4 blocks (8x8 pixels), read row by row; block ``n`` carries bit
   ``n mod L`` of the ``L``-bit message (so each bit is repeated over the image).
4. In each block the coefficient of largest magnitude other than the first (``[0, 0]``) is
   quantized (quantization index modulation, Chen & Wornell 2001): with ``q = |v| // s``,
   ``|v| <- (q + 1/4 + bit/2) * s``, sign kept, ``s = 36``.
5. Decoding finds the same coefficient and reads ``bit = (|v| mod s) > s/2``; each bit is the
   majority over its blocks.

Changing one ``cA`` coefficient by ``d`` is the inverse Haar transform adding ``d/2`` to ``U``
at its 2x2 pixels, which is what :func:`embed` does; then back to RGB (B and G change, keeping
Y and V; where B saturates, R and G change instead).
Unlike the library, the detail bands are left as they were (the library passes them back to
its inverse DWT with the horizontal and vertical bands swapped).

Size: the library refuses images under 256x256 pixels (65,536 pixels). genimage's own code
needs one 8x8 block per message bit at least, and :data:`MIN_BLOCKS` blocks to be reliable:
a 32-bit message needs about 128x128 pixels. The bundled 32x32 shapes images have 16 blocks:
too few for even one copy of 32 bits, so they are not marked this way.

Detection score: with a known message, the fraction ``a`` of blocks whose quantized
coefficient agrees with its bit. Without the mark each block agrees with probability about
1/2, so ``z = (a - 1/2) * 2 * sqrt(n)`` is about standard normal over ``n`` blocks.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from genimage.errors import GenimageError

SCALE = 36.0
BLOCK = 4
MIN_BLOCKS = 256  # 8x8-pixel blocks: e.g. 128x128 pixels
LIBRARY_MIN_PIXELS = 256 * 256
DEFAULT_BITS = 32
DETECTION_Z = 3.0902  # one-sided p = 1e-3, as the spread-spectrum mark


def default_message(key: str) -> bytes:
    """The 4-byte message genimage writes for ``key``: the first bytes of sha256(``dwtdct|key``)."""
    return hashlib.sha256(f"dwtdct|{key}".encode("utf-8")).digest()[:DEFAULT_BITS // 8]


def bits_of(message: bytes) -> np.ndarray:
    """Message bytes -> bits, most significant first (as ``numpy.unpackbits``)."""
    return np.unpackbits(np.frombuffer(bytes(message), dtype=np.uint8)).astype(np.int64)


def bytes_of(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def num_blocks(height: int, width: int) -> int:
    """Number of 8x8-pixel blocks (4x4 Haar-approximation blocks) an image carries."""
    return (height // 8) * (width // 8)


def fits(height: int, width: int, bits: int = DEFAULT_BITS) -> bool:
    """Whether an RGB image of this size carries a ``bits``-bit message reliably."""
    return num_blocks(height, width) >= max(MIN_BLOCKS, bits)


def rgb_to_u(rgb: np.ndarray) -> np.ndarray:
    """``U`` of float RGB ``(H, W, 3)`` in 0..255 (step 1 of the module docstring)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return 0.492 * (b - y) + 128.0


def _approx(u: np.ndarray) -> np.ndarray:
    """Haar approximation band ``(H/2, W/2)`` of ``u`` ``(H, W)`` (H, W even)."""
    return (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) / 2.0


def _blocks(ca: np.ndarray) -> np.ndarray:
    """``ca`` ``(4I, 4J)`` as ``(I*J, 16)`` blocks in row-major block order."""
    i, j = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    return ca[: i * BLOCK, : j * BLOCK].reshape(i, BLOCK, j, BLOCK).transpose(0, 2, 1, 3).reshape(i * j, BLOCK * BLOCK)


def _chosen(blocks: np.ndarray) -> np.ndarray:
    """Index (1..15) of each block's largest-magnitude coefficient, skipping ``[0, 0]``."""
    return np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1


def _runner_up(blocks: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Magnitude of each block's second-largest coefficient (again skipping ``[0, 0]``)."""
    mags = np.abs(blocks[:, 1:]).copy()
    mags[np.arange(len(blocks)), pos - 1] = -np.inf
    return mags.max(axis=1)


def _target(mag: np.ndarray, second: np.ndarray, bit: np.ndarray, scale: float, margin: float = 4.0) -> np.ndarray:
    """New magnitude of each chosen coefficient: the quantization point ``(q + 1/4 + bit/2) s``
    nearest ``mag`` among those that keep it the block's largest by ``margin`` (so a decoder
    finds the same coefficient). The library always takes ``q = mag // s``; any ``q`` decodes
    the same, this one keeps the mark readable where two coefficients are close."""
    base = np.floor(mag / scale)
    best = np.full_like(mag, np.nan)
    for dq in (0.0, 1.0, -1.0, 2.0, 3.0):  # nearest first; q + 3 always clears second <= mag
        t = (base + dq + 0.25 + 0.5 * bit) * scale
        ok = np.isnan(best) & (t > second + margin) & (t > 0)
        cost_ok = ok | (~np.isnan(best) & (t > second + margin) & (np.abs(t - mag) < np.abs(best - mag)))
        best = np.where(cost_ok, t, best)
    return best


def _check(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise GenimageError(f"the DWT-DCT mark takes RGB uint8 images (H, W, 3), got {rgb.dtype} {rgb.shape}")


def _u_of_uint8(rgb: np.ndarray) -> np.ndarray:
    _check(rgb)
    return np.clip(np.round(rgb_to_u(rgb.astype(np.float64))), 0, 255)  # what an 8-bit YUV decoder sees


def embed(rgb: np.ndarray, message: bytes, scale: float = SCALE, passes: int = 3) -> np.ndarray:
    """Mark an RGB uint8 image ``(H, W, 3)`` with ``message``; returns a new uint8 image.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB (convert BGR arrays from OpenCV first).
        message: The bytes to carry (the library's ``WatermarkEncoder.set_watermark('bytes', ...)``).
        scale: Quantization step ``s`` (the library's default for ``U``: 36).
        passes: Times the quantization is re-applied to the rounded, clipped result, so that
            8-bit rounding and clipping at 0/255 lose fewer blocks (1 = a single pass as the
            library does).
    """
    _check(rgb)
    bits = bits_of(message)
    if len(bits) == 0:
        raise GenimageError("the watermark message is empty")
    h, w = rgb.shape[:2]
    if num_blocks(h, w) < len(bits):
        raise GenimageError(f"a {w}x{h} image has {num_blocks(h, w)} 8x8 blocks, fewer than the message's {len(bits)} bits; "
                            "the DWT-DCT mark needs larger images (invisible-watermark itself needs 256x256)")
    out = rgb.copy()
    for _ in range(max(1, passes)):
        u = _u_of_uint8(out)
        h4, w4 = h // 4 * 4, w // 4 * 4
        ca = _approx(u[:h4, :w4])
        blocks = _blocks(ca)
        n = len(blocks)
        want = bits[np.arange(n) % len(bits)]
        pos = _chosen(blocks)
        val = blocks[np.arange(n), pos]
        mag = np.abs(val)
        target = _target(mag, _runner_up(blocks, pos), want, scale)
        delta = np.where(val >= 0, target, -target) - val
        # delta per ca coefficient -> delta/2 on U at its 2x2 pixels
        dca = np.zeros_like(blocks)
        dca[np.arange(n), pos] = delta
        i, j = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
        dgrid = np.zeros_like(ca)
        dgrid[: i * BLOCK, : j * BLOCK] = dca.reshape(i, j, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(i * BLOCK, j * BLOCK)
        du = np.zeros((h, w))
        du[:h4, :w4] = np.repeat(np.repeat(dgrid, 2, axis=0), 2, axis=1) / 2.0
        f = out.astype(np.float64)
        f[..., 2] += 2.032 * du  # B = Y + 2.032 (U - 128)
        f[..., 1] += -0.395 * du  # G = Y - 0.395 (U - 128) - 0.581 (V - 128)
        f = np.clip(f, 0, 255)
        # Where B (or G) saturated, move U the other way round: R and G against Y, B fixed
        # (dU = -0.492 dY; dR = dY keeps V; dG = 1.194 dY), for what clipping cut off.
        rest = du - (rgb_to_u(f) - rgb_to_u(out.astype(np.float64)))
        f[..., 0] += -2.032 * rest
        f[..., 1] += -2.427 * rest
        out = np.clip(np.round(f), 0, 255).astype(np.uint8)
    return out


def block_votes(rgb: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """Bit each block reads, ``(n_blocks,)`` of 0/1, in block order (step 5)."""
    u = _u_of_uint8(rgb)
    h, w = u.shape
    blocks = _blocks(_approx(u[: h // 4 * 4, : w // 4 * 4]))
    val = np.abs(blocks[np.arange(len(blocks)), _chosen(blocks)])
    return (np.mod(val, scale) > 0.5 * scale).astype(np.int64)


def decode_bits(rgb: np.ndarray, nbits: int = DEFAULT_BITS, scale: float = SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``nbits`` bits: ``(bits, share)`` where ``share[k]`` is the fraction of bit ``k``'s
    blocks that read 1 (a bit is 1 when it is over 1/2, as the library's ``avg * 255 > 127``)."""
    votes = block_votes(rgb, scale)
    if len(votes) < nbits:
        raise GenimageError(f"the image has {len(votes)} 8x8 blocks, fewer than {nbits} bits")
    idx = np.arange(len(votes)) % nbits
    share = np.bincount(idx, weights=votes, minlength=nbits) / np.bincount(idx, minlength=nbits)
    return (share * 255 > 127).astype(np.int64), share


def decode(rgb: np.ndarray, nbytes: int = DEFAULT_BITS // 8, scale: float = SCALE) -> bytes:
    """The ``nbytes``-byte message an RGB uint8 image carries (whatever it is; check it)."""
    return bytes_of(decode_bits(rgb, nbytes * 8, scale)[0])


def score(rgb: np.ndarray, message: bytes, scale: float = SCALE) -> dict:
    """How strongly ``rgb`` carries ``message``: block agreement, its ``z`` (module docstring),
    the bit accuracy of the decoded message, and the decoded bytes."""
    want = bits_of(message)
    votes = block_votes(rgb, scale)
    if len(votes) < len(want):
        raise GenimageError(f"the image has {len(votes)} 8x8 blocks, fewer than the message's {len(want)} bits")
    agree = float(np.mean(votes == want[np.arange(len(votes)) % len(want)]))
    z = (agree - 0.5) * 2.0 * math.sqrt(len(votes))
    bits, _ = decode_bits(rgb, len(want), scale)
    return {"agreement": agree, "z": z, "blocks": int(len(votes)),
            "bit_accuracy": float(np.mean(bits == want)), "decoded": bytes_of(bits).hex()}


def parse_message(text: str | None = None, hex_message: str | None = None) -> bytes:
    """A message from the command line: UTF-8 ``text`` or ``hex_message`` (one of them)."""
    if text is not None and hex_message is not None:
        raise GenimageError("give the message as text or as hex, not both")
    if hex_message is not None:
        try:
            out = bytes.fromhex(hex_message)
        except ValueError:
            raise GenimageError(f"--message-hex expects hex digits (e.g. 676e696d), got {hex_message!r}") from None
    else:
        out = (text or "").encode("utf-8")
    if not out:
        raise GenimageError("the watermark message is empty")
    return out
