"""Malformed safetensors: every fuzzed file is refused in one line (or, for a harmless
mutation, loads exactly the original tensors); a relabelled dtype or flipped bytes never
load silently. The 1,000-file run with timings is scripts/reliability_fuzz_safetensors.py."""

from __future__ import annotations

import collections
import json
import struct

import pytest
import torch
from fuzz_safetensors import MUTATIONS, base_file, fuzz_cases
from safetensors.torch import save_file

from genimage.errors import GenimageError
from genimage.utils.weights import load_safetensors, save_safetensors, validate_safetensors_file


def test_a_hundred_fuzzed_files_are_refused_in_one_line(tmp_path):
    base = base_file(tmp_path)
    original = load_safetensors(tmp_path / "base.safetensors")
    refused: collections.Counter = collections.Counter()
    for i, (kind, data) in enumerate(fuzz_cases(base, 6 * len(MUTATIONS), seed=1)):
        path = tmp_path / f"{i:04d}.safetensors"
        path.write_bytes(data)
        try:
            back = load_safetensors(path)
        except GenimageError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), (kind, str(exc))
            refused[kind] += 1
            continue
        # accepted: only if the mutation changed nothing that matters
        assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back), kind
    assert set(refused) == set(MUTATIONS)  # every kind of damage is caught
    assert sum(refused.values()) >= 6 * len(MUTATIONS) - 3


def test_a_relabelled_dtype_or_flipped_byte_does_not_load_silently(tmp_path):
    path = tmp_path / "model.safetensors"
    save_safetensors({"w": torch.randn(8, 8), "b": torch.randn(8)}, path)
    data = path.read_bytes()
    relabelled = data.replace(b'"F32"', b'"I32"', 1)  # same size: a valid file, other numbers
    assert relabelled != data
    (tmp_path / "relabelled.safetensors").write_bytes(relabelled)
    validate_safetensors_file(tmp_path / "relabelled.safetensors")  # the header alone cannot tell
    with pytest.raises(GenimageError, match="is damaged"):
        load_safetensors(tmp_path / "relabelled.safetensors")
    flipped = bytearray(data)
    flipped[-5] ^= 0x10
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(GenimageError, match="is damaged.*sha256"):
        load_safetensors(tmp_path / "flipped.safetensors")


def test_files_without_a_checksum_still_load(tmp_path):
    """Models saved before genimage recorded checksums (or by other tools) load as before."""
    path = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(3)}, str(path))
    assert "__metadata__" not in validate_safetensors_file(path)
    assert torch.equal(load_safetensors(path)["w"], torch.ones(3))


def test_a_huge_declared_shape_is_refused_by_arithmetic(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(GenimageError, match="needs 4835703278458516698824704 bytes but spans 16"):
        load_safetensors(path)
