"""Every one-pass family resumes bit for bit through the generic trainer (GAN: two optimizers)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_train_config

from genimage.data.builtin import load_builtin
from genimage.families import FAMILIES, load_all_families
from genimage.models.config import ModelConfig
from genimage.training.loop import Trainer


@pytest.mark.parametrize("family", ["gan", "vae", "normalizing-flow"])
def test_interrupted_run_resumes_to_identical_weights(family, tmp_path):
    load_all_families()
    bc = {**FAMILIES.get(family).presets["tiny"], "image_size": 8, "channels": 1, "num_classes": 10}
    mc = ModelConfig(backbone=family, backbone_config=bc, objective="", path="", prediction="", image_size=8,
                     channels=1, num_classes=10, family=family, training={"data": "builtin:digits"})
    data = load_builtin("digits", length=64)
    kw = dict(checkpoint_every=2, num_sample_images=2, grad_clip=0.0)
    straight = Trainer(mc, tiny_train_config(4, **kw), data, tmp_path / "a")
    straight.train()
    Trainer(mc, tiny_train_config(2, **kw), data, tmp_path / "b").train()
    resumed = Trainer(mc, tiny_train_config(4, **kw), data, tmp_path / "b", resume=True)
    resumed.train()
    a, b = straight.model.training_state(), resumed.model.training_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history == resumed.history
