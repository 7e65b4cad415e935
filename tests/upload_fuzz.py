"""Damaged uploads for the service's fuzz: random bytes, PNG / JPEG / WebP files cut short or
with flipped bytes, headers that declare huge sizes, and pickles dressed as images (used by
tests/serve/test_upload_fuzz.py and scripts/reliability_service.py)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")


def good_image(fmt: str, size: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int = 2**31 - 1, height: int = 2**31 - 1) -> bytes:
    """A PNG whose (valid, CRC-correct) header declares ``width x height`` pixels and whose
    data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def huge_jpeg(width: int = 65535, height: int = 65535) -> bytes:
    """A small JPEG whose SOF0 frame header is rewritten to declare ``width x height``."""
    data = bytearray(good_image("JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def huge_webp(width: int = 16384, height: int = 16384) -> bytes:
    """A WebP (VP8X extended header) declaring a ``width x height`` canvas."""
    vp8x = bytes([0x10, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x + b"VP8 " + struct.pack("<I", 4) + b"\0" * 4
    return b"RIFF" + struct.pack("<I", len(body)) + body


def damaged(rng: random.Random, sentinel: Path | None = None) -> tuple[str, bytes]:
    """One damaged upload: ``(kind, bytes)``."""
    kinds = ["random", "truncated", "flipped", "header-only", "huge-declared", "empty", "text"]
    if sentinel is not None:
        kinds.append("pickle")
    kind = rng.choice(kinds)
    fmt = rng.choice(FORMATS)
    good = good_image(fmt, rng.choice((8, 16, 33)), rng.randrange(1 << 30))
    if kind == "random":
        return kind, rng.randbytes(rng.randrange(1, 4096))
    if kind == "truncated":
        return f"{kind}-{fmt}", good[: rng.randrange(1, len(good))]
    if kind == "flipped":
        data = bytearray(good)
        for _ in range(rng.randrange(1, 16)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return f"{kind}-{fmt}", bytes(data)
    if kind == "header-only":
        return f"{kind}-{fmt}", good[: rng.randrange(8, 40)]
    if kind == "huge-declared":
        which = rng.choice(("png", "png-wide", "jpeg", "webp"))
        return f"{kind}-{which}", {"png": huge_png, "png-wide": lambda: huge_png(2**31 - 1, 1), "jpeg": huge_jpeg,
                                   "webp": huge_webp}[which]()
    if kind == "empty":
        return kind, b""
    if kind == "pickle":
        from payloads import payloads

        name, data = rng.choice(sorted(payloads(sentinel).items()))
        return f"pickle-{name}", data
    return kind, b"<svg xmlns='http://www.w3.org/2000/svg'/>" if rng.random() < 0.5 else b"GIF89a" + b"\0" * 20
