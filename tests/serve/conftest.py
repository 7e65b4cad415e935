"""Shared fixtures of the service tests: a digits studio (8x8, fast) and clients on it."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from genimage.serve.app import create_app
from genimage.serve.guard import AccessPolicy
from genimage.serve.limits import Limits
from genimage.serve.studio import Studio

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
def digits_studio():
    return Studio(default_model="digits", device="cpu", max_images=4)


def _make_client(studio=None, policy=None, jobs=None, **limits) -> TestClient:
    """A test client on loopback port 8000 (the default policy's Host), sending X-Genimage."""
    if studio is None or limits:
        studio = Studio(default_model="digits", device="cpu", limits=Limits(**{"max_images": 4, **limits}))
    return TestClient(create_app(studio, policy, jobs), base_url=BASE, headers={"X-Genimage": "1"})


def _png(size=(8, 8), mode="L", color=128) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def make_client():
    """``make_client(studio=None, policy=None, jobs=None, **limits)``: a client on a fresh app."""
    return _make_client


@pytest.fixture(scope="session")
def png():
    """``png(size=(8, 8), mode="L", color=128)``: the bytes of a plain PNG."""
    return _png
