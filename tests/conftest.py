"""Shared test setup: make the helper modules in ``tests/`` (e.g. ``analytic``) importable."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny class-conditional flow-matching model trained for a few steps (shared by tests)."""
    from tiny import train_tiny

    out = tmp_path_factory.mktemp("tiny_run")
    train_tiny(out, steps=8)
    return out
