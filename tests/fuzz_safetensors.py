"""Malformed safetensors files for the fuzz test (tests/utils/test_safetensors_fuzz.py) and
scripts/reliability_fuzz_safetensors.py: structured mutations of a valid genimage-written
file, one kind of damage each, drawn from a seeded generator."""

from __future__ import annotations

import json
import random
import struct
from typing import Callable

import torch

from genimage.utils.weights import save_safetensors


def base_file(tmp_dir) -> bytes:
    """A valid file as genimage writes it (three dtypes, a scalar, an empty tensor, a checksum)."""
    path = tmp_dir / "base.safetensors"
    g = torch.Generator().manual_seed(0)
    save_safetensors({"w": torch.randn(4, 6, generator=g), "b": torch.arange(7, dtype=torch.int64),
                      "h": torch.randn(3, generator=g).half(), "s": torch.tensor(2.5), "e": torch.zeros(0, 3)}, path)
    return path.read_bytes()


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header, body: bytes, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _tensor_names(h: dict) -> list[str]:
    return sorted(k for k in h if k != "__metadata__")


def _header_length(data, rng):
    value = rng.choice([0, 1, len(data), len(data) - 7, 2**63, 2**64 - 1, 2**64 - rng.randrange(1, 1000),
                        rng.randrange(len(data), 2**40), 100_000_001])
    return struct.pack("<Q", value) + data[8:]


def _header_past_end(data, rng):
    (n,) = struct.unpack("<Q", data[:8])
    return data[:8 + rng.randrange(1, n)]


def _invalid_json(data, rng):
    h, body = _split(data)
    text = bytearray(json.dumps(h).encode())
    choice = rng.randrange(4)
    if choice == 0:
        text = text[: rng.randrange(1, len(text))]
    elif choice == 1:
        for _ in range(rng.randrange(1, 4)):
            text[rng.randrange(len(text))] = rng.choice(b"{}[]:,\"\\\x00\xff")
    elif choice == 2:
        text = bytearray(b"\xff\xfe" + bytes(text[2:]))
    else:
        text = bytearray(b"[" + bytes(text) + b"]")
    return _join(None, body, bytes(text))


def _edit_entry(fn: Callable[[dict, dict, random.Random, int], None]):
    def mutate(data, rng):
        h, body = _split(data)
        name = rng.choice(_tensor_names(h))
        fn(h[name], h, rng, len(body))
        return _join(h, body)
    return mutate


def _unknown_dtype(e, h, rng, n):
    e["dtype"] = rng.choice(["F128", "Q4", "", "f32", "STR", "OBJECT", 5, None, "F4"])


def _offsets_out_of_range(e, h, rng, n):
    b, end = e["data_offsets"]
    e["data_offsets"] = rng.choice([[b, n + rng.randrange(1, 10**6)], [-8, end], [end, b - 1], [b, 2**62],
                                    [b], [b, end, end], ["0", end], [b + 0.5, end], None])


def _shape_mismatch(e, h, rng, n):
    shape = list(e["shape"])
    choice = rng.randrange(5)
    if choice == 0:
        e["shape"] = shape + [2]
    elif choice == 1:
        e["shape"] = [d + 1 for d in shape] or [3]
    elif choice == 2:
        e["shape"] = [-1] + shape
    elif choice == 3:
        e["shape"] = [1.5] if shape else [True]
    else:
        e["shape"] = "4,6"


def _huge_shape(e, h, rng, n):
    e["shape"] = rng.choice([[2**31, 2**31], [10**12], [2**20] * 8, [2**62, 4], [2**40, 2**40, 2**40]])
    if rng.random() < 0.5:  # offsets that claim it too
        b = e["data_offsets"][0]
        e["data_offsets"] = [b, b + 4 * 2**62]


def _relabel_dtype(e, h, rng, n):
    same_size = {"F32": ["I32", "U32"], "I64": ["F64", "U64"], "F16": ["BF16", "I16"]}
    if e["dtype"] in same_size:
        e["dtype"] = rng.choice(same_size[e["dtype"]])
    else:
        e["dtype"] = "U8"


def _overlap(data, rng):
    h, body = _split(data)
    names = [k for k in _tensor_names(h) if h[k]["data_offsets"][1] > h[k]["data_offsets"][0]]
    a, b = rng.sample(names, 2)
    h[b]["data_offsets"] = list(h[a]["data_offsets"])
    if h[b]["dtype"] != h[a]["dtype"] or h[b]["shape"] != h[a]["shape"]:
        h[b]["dtype"], h[b]["shape"] = h[a]["dtype"], h[a]["shape"]
    return _join(h, body)


def _trailing(data, rng):
    return data + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))


def _truncated_body(data, rng):
    (n,) = struct.unpack("<Q", data[:8])
    return data[: rng.randrange(8 + n, len(data))]


def _flip_data(data, rng):
    (n,) = struct.unpack("<Q", data[:8])
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(8 + n, len(data))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _flip_anywhere(data, rng):
    out = bytearray(data)
    i = rng.randrange(len(data))
    out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _bad_metadata(data, rng):
    h, body = _split(data)
    h["__metadata__"] = rng.choice([{"a": 1}, ["x"], "text", {"k": None}, {"k": {"n": "v"}}])
    return _join(h, body)


def _duplicate_key(data, rng):
    h, body = _split(data)
    name = rng.choice(_tensor_names(h))
    text = json.dumps(h)
    entry = json.dumps({name: h[name]})[1:-1]
    return _join(None, body, ("{" + entry + ", " + text[1:]).encode())


def _extra_field(e, h, rng, n):
    e[rng.choice(["offset", "strides", "byteorder"])] = 0


def _random_header(data, rng):
    body = data[-64:]
    text = bytes(rng.randrange(256) for _ in range(rng.randrange(2, 200)))
    return _join(None, body, b"{" + text)


#: kind -> mutation(data, rng) -> bytes
MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "header-length": _header_length,
    "header-past-end": _header_past_end,
    "invalid-json": _invalid_json,
    "unknown-dtype": _edit_entry(_unknown_dtype),
    "offsets-out-of-range": _edit_entry(_offsets_out_of_range),
    "overlapping-offsets": _overlap,
    "shape-size-mismatch": _edit_entry(_shape_mismatch),
    "huge-shape": _edit_entry(_huge_shape),
    "relabelled-dtype": _edit_entry(_relabel_dtype),
    "extra-field": _edit_entry(_extra_field),
    "trailing-bytes": _trailing,
    "truncated-body": _truncated_body,
    "flipped-data-bits": _flip_data,
    "flipped-bit-anywhere": _flip_anywhere,
    "bad-metadata": _bad_metadata,
    "duplicate-key": _duplicate_key,
    "random-header": _random_header,
}


def fuzz_cases(base: bytes, n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` mutated files, the kinds taken in turn, each mutation drawn from ``seed``."""
    rng = random.Random(seed)
    kinds = list(MUTATIONS)
    return [(kinds[i % len(kinds)], MUTATIONS[kinds[i % len(kinds)]](base, rng)) for i in range(n)]
