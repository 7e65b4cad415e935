"""Tiny, fast training configurations shared by the tests."""

from __future__ import annotations

import torch

from genimage.data.tensor import TensorImageDataset
from genimage.models.config import ModelConfig
from genimage.models.presets import backbone_config
from genimage.training.loop import Trainer, TrainConfig


def tiny_dataset(n: int = 48, size: int = 8, channels: int = 1, classes: int = 3) -> TensorImageDataset:
    g = torch.Generator().manual_seed(123)
    labels = torch.arange(n) % classes
    # class-dependent blobs so there is something to learn
    base = torch.linspace(-1, 1, size)
    grid = base.view(1, 1, size, 1) * base.view(1, 1, 1, size)
    images = torch.tanh(grid * (labels.view(-1, 1, 1, 1) - 1) * 2 + 0.1 * torch.randn(n, channels, size, size, generator=g))
    return TensorImageDataset(images, labels)


def tiny_model_config(backbone: str = "dit", objective: str = "flow-matching", path: str = "linear",
                      prediction: str = "velocity", size: int = 8, channels: int = 1, classes: int = 3) -> ModelConfig:
    bc = backbone_config(backbone, "tiny", image_size=size, channels=channels, num_classes=classes)
    return ModelConfig(backbone=backbone, backbone_config=bc, objective=objective, path=path, prediction=prediction,
                       image_size=size, channels=channels, num_classes=classes,
                       class_names=[str(i) for i in range(classes)], steps=4)


def tiny_train_config(steps: int = 6, **kw) -> TrainConfig:
    base = dict(steps=steps, batch_size=8, checkpoint_every=3, progress=False, log_every=3, warmup_steps=2,
                num_sample_images=4)
    base.update(kw)
    return TrainConfig(**base)


def train_tiny(out, steps: int = 6, model_config: ModelConfig | None = None, resume: bool = False, **kw):
    trainer = Trainer(model_config or tiny_model_config(), tiny_train_config(steps, **kw), tiny_dataset(), out,
                      resume=resume)
    history = trainer.train()
    return trainer, history
