"""Weights load only from safetensors; pickle files are refused by content."""

import pickle

import pytest
import torch

from genimage.errors import GenimageError
from genimage.utils.weights import load_safetensors, save_safetensors, sha256_file, sniff_weights_format


def test_round_trip_and_hash(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    p = tmp_path / "w.safetensors"
    save_safetensors(t, p)
    back = load_safetensors(p)
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert len(sha256_file(p)) == 64
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "model.bin", "model.safetensors"])
def test_torch_save_refused_whatever_the_extension(tmp_path, name):
    p = tmp_path / name
    torch.save({"w": torch.zeros(2)}, p)  # zip-based pickle
    assert sniff_weights_format(p) == "zip-pickle"
    with pytest.raises(GenimageError, match="pickle"):
        load_safetensors(p)


def test_raw_pickle_refused(tmp_path):
    p = tmp_path / "model.safetensors"
    p.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
    with pytest.raises(GenimageError, match="pickle"):
        load_safetensors(p)


def test_garbage_and_missing(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"hello world, not weights")
    with pytest.raises(GenimageError, match="not a safetensors"):
        load_safetensors(p)
    with pytest.raises(GenimageError, match="not found"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_truncated_safetensors(tmp_path):
    p = tmp_path / "w.safetensors"
    save_safetensors({"a": torch.randn(100)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 50])
    with pytest.raises(GenimageError):
        load_safetensors(p)
