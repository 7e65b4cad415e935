"""Sample, record and replay families that generate in one network pass (GAN, VAE,
normalizing flow, autoencoder), so ``genimage sample`` / ``genimage replay`` work for them as
for diffusion models. The record's ``sampler`` names the family; each image is generated on
its own (one pass each), so replay regenerates it bit for bit on the same machine (and
device type, which the record stores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from genimage.families.io import LoadedGenerator, load_generator
from genimage.provenance.record import GenerationRecord, save_png
from genimage.samplers.noise import generators_for_seeds
from genimage.utils.finite import check_generated

DIRECT_FAMILIES = ("gan", "vae", "normalizing-flow", "autoencoder")


def is_direct(family: str) -> bool:
    return family in DIRECT_FAMILIES


@torch.no_grad()
def generate_direct(lg: LoadedGenerator, seeds: Sequence[int], labels: Sequence[int | None] | None) -> torch.Tensor:
    """One image per seed (image ``i`` from ``seeds[i]`` alone), on the CPU whatever the model's device."""
    out = []
    for i, seed in enumerate(seeds):
        cond = [labels[i] if labels[i] is not None else -1] if labels is not None else None
        out.append(lg.model.sample(1, cond, generators_for_seeds([seed])).float().cpu())
    images = torch.cat(out)
    check_generated(images, f"the model {lg.folder}")
    return images


def record_for(lg: LoadedGenerator, model_ref: str, seed: int, label: int | None,
               watermark: bool = True) -> GenerationRecord:
    from genimage import __version__

    from genimage.provenance.watermark import record_entry

    c = lg.config
    param = next(lg.model.parameters(), None)
    return GenerationRecord(model=str(model_ref), model_sha256=lg.weights_sha256, objective=c.family, path="",
                            sampler=c.family, schedule="", steps=1, guidance=1.0, seed=seed, width=c.image_size,
                            height=c.image_size, label=label, genimage_version=__version__,
                            device=param.device.type if param is not None else "cpu",
                            watermark=record_entry(c.channels, c.image_size, c.image_size, watermark))


def sample_direct(model_ref: str, seeds: Sequence[int], labels: Sequence[int | None] | None,
                  paths: Sequence[Path], device: str | torch.device = "cpu",
                  watermark: bool = True) -> tuple[torch.Tensor, list[Path]]:
    from genimage.utils.device import resolve_device

    lg = load_generator(model_ref, device=resolve_device(device))
    images = generate_direct(lg, seeds, labels)
    written = [save_png(img, p, record_for(lg, model_ref, s, labels[i] if labels else None, watermark))
               for i, (img, p, s) in enumerate(zip(images, paths, seeds))]
    return images, written


def replay_direct(record: GenerationRecord, image_path: str | Path, model: str | None = None,
                  device: str | torch.device | None = None):
    """Regenerate ``image_path`` from its record (on ``device``, default the recorded one);
    returns a :class:`~genimage.provenance.replay_check.ReplayResult`."""
    from genimage.provenance.replay_check import compare_with_png, replay_device

    lg = load_generator(model or record.model, device=replay_device(record, image_path, device))
    image = generate_direct(lg, [record.seed], [record.label] if lg.config.num_classes else None)[0]
    return compare_with_png(image, image_path, record, lg.weights_sha256 == record.model_sha256)
