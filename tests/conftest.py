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


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory):
    """A tiny text-conditional model on 16 px shapes, trained for 3 steps (shared by tests)."""
    from genimage.data.builtin import load_builtin
    from genimage.models.config import ModelConfig
    from genimage.models.presets import backbone_config
    from genimage.training.loop import Trainer
    from tiny import tiny_train_config

    out = tmp_path_factory.mktemp("tiny_text_run")
    data = load_builtin("shapes", image_size=16, length=64)
    bc = backbone_config("dit", "tiny", image_size=16, channels=3, text_dim=384, max_text_len=16)
    mc = ModelConfig(backbone="dit", backbone_config=bc, objective="flow-matching", path="linear",
                     prediction="velocity", image_size=16, channels=3, text_encoder="minilm", text_max_length=16,
                     steps=3, guidance=2.0)
    Trainer(mc, tiny_train_config(3, num_sample_images=2), data, out).train()
    return out
