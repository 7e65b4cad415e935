"""The Inception option refuses files that are not the published FID weights."""

import hashlib

import pytest

import genimage.metrics.inception as inception
from genimage.errors import GenimageError
from genimage.metrics.features import load_inception


def test_published_hash_and_name_agree():
    assert inception.INCEPTION_SHA256 == "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
    assert inception.INCEPTION_FILENAME.removesuffix(".pth").endswith(inception.INCEPTION_SHA256[:8])


def test_missing_file(tmp_path):
    with pytest.raises(GenimageError, match="not found"):
        load_inception(tmp_path / inception.INCEPTION_FILENAME)


def test_wrong_file_is_refused(tmp_path):
    fake = tmp_path / inception.INCEPTION_FILENAME
    fake.write_bytes(b"\x80\x02not really inception")
    with pytest.raises(GenimageError, match="sha256"):
        load_inception(fake)


def test_right_hash_without_torch_fidelity_explains_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    try:
        import torch_fidelity  # noqa: F401
        pytest.skip("torch-fidelity is installed")
    except ImportError:
        pass
    f = tmp_path / "weights.pth"
    f.write_bytes(b"stand-in bytes")
    monkeypatch.setattr(inception, "INCEPTION_SHA256", hashlib.sha256(b"stand-in bytes").hexdigest())
    with pytest.raises(GenimageError, match="passed the sha256 check.*torch-fidelity"):
        load_inception(f)
