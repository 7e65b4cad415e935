"""A folder of good images mixed with bad ones, for tests/data/test_bad_image_mix.py and
scripts/reliability_bad_images.py.

Bad kinds the loader knows (each must be reported with its reason): zero-byte, not an
image, truncated, corrupt (bytes flipped mid-file), a decompression bomb (a PNG header
declaring 20000 x 20000), over the pixel cap. Kinds it was not written for (each must be
either reported or used, never crash nor blow up memory): a PNG with a 50 MB iCCP chunk
(the profile compresses to a few KB), an animated GIF, a 1 x 60000 strip, a JPEG whose
Huffman table is damaged.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

KNOWN_BAD = {"zero-byte": "zero-byte", "text": "not an image", "truncated": "truncated", "flipped": "corrupt",
             "bomb": "over pixel cap"}
UNKNOWN = ("huge-iccp", "animated-gif", "strip", "bad-huffman")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(rng: np.random.Generator, w: int = 12, h: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 8)) + _chunk(b"IEND", b"")


def _huge_iccp(rng) -> bytes:
    png = _png(rng)
    profile = zlib.compress(b"\0" * 50_000_000, 9)  # 50 MB when inflated
    iccp = _chunk(b"iCCP", b"evil\0\0" + profile)
    return png[:33] + iccp + png[33:]  # right after IHDR


def _animated_gif(rng) -> bytes:
    frames = [Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).convert("P") for _ in range(5)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _strip(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1, 60000), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bad_huffman(rng) -> bytes:
    data = bytearray(_jpeg(rng))
    i = data.find(b"\xff\xc4")  # DHT marker: damage the code lengths
    for k in range(i + 5, min(i + 21, len(data))):
        data[k] = 0xFF
    return bytes(data)


def make_mix(root: Path, n_good: int, n_bad: int, seed: int = 0) -> tuple[set[str], dict[str, str]]:
    """Write ``n_good`` good and ``n_bad`` bad files under ``root`` (shuffled names).

    Returns ``(good relative paths, {bad relative path: kind})``.
    """
    rng = np.random.default_rng(seed)
    order = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    kinds = [*KNOWN_BAD, *UNKNOWN]
    entries: list[tuple[str, bytes, str | None]] = []
    for i in range(n_good):
        entries.append(("png" if i % 2 else "jpg", _png(rng) if i % 2 else _jpeg(rng), None))
    good_png = _png(rng, 24, 20)
    for i in range(n_bad):
        kind = kinds[i % len(kinds)]
        data = {"zero-byte": lambda: b"", "text": lambda: b"not a picture, just notes\n" * 3,
                "truncated": lambda: good_png[: len(good_png) // 2],
                "flipped": lambda: (good_png[:60] + bytes(b ^ 0xFF for b in good_png[60:80]) + good_png[80:]),
                "bomb": _bomb, "huge-iccp": lambda: _huge_iccp(rng), "animated-gif": lambda: _animated_gif(rng),
                "strip": lambda: _strip(rng), "bad-huffman": lambda: _bad_huffman(rng)}[kind]()
        ext = {"animated-gif": "gif", "bad-huffman": "jpg"}.get(kind, "png")
        entries.append((ext, data, kind))
    order.shuffle(entries)
    good, bad = set(), {}
    for i, (ext, data, kind) in enumerate(entries):
        rel = f"{i:05d}.{ext}"
        (root / rel).write_bytes(data)
        if kind is None:
            good.add(rel)
        else:
            bad[rel] = kind
    return good, bad
