"""The trainer asks families for divergence / mode-collapse warnings at every sample grid."""

from __future__ import annotations

import re

from tiny import tiny_train_config

from genimage.data.builtin import load_builtin
from genimage.families import FAMILIES, load_all_families
from genimage.models.config import ModelConfig
from genimage.training.loop import Trainer


def test_untrained_conditional_gan_is_flagged_with_numbers(tmp_path, capsys):
    load_all_families()
    bc = {**FAMILIES.get("gan").presets["tiny"], "image_size": 8, "channels": 1, "num_classes": 10}
    mc = ModelConfig(backbone="gan", backbone_config=bc, objective="", path="", prediction="", image_size=8,
                     channels=1, num_classes=10, family="gan", training={"data": "builtin:digits"})
    Trainer(mc, tiny_train_config(2, checkpoint_every=0, grad_clip=0.0), load_builtin("digits"), tmp_path).train()
    text = (tmp_path / "warnings.txt").read_text()
    assert "step 2: warning:" in text and re.search(r"\d\.\d+", text)  # the warning carries its numbers
    assert "warning:" in capsys.readouterr().err
