"""Sampler sweep: quality vs network evaluations vs wall-clock for every sampler of one
diffusion-family model (Karras et al. 2022 Fig. 2 style), plus any 1-4 step models
(consistency, reflow/distilled) given beside it as single points or short curves."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch

from genimage.evaluation.sampling import conditions_for, draw_samples
from genimage.metrics.frechet import frechet_distance
from genimage.samplers import NFE_PER_STEP

DEFAULT_GRID: dict[str, tuple[int, ...]] = {
    "euler": (2, 4, 8, 16, 32),
    "heun": (2, 4, 8, 16),
    "ddim": (2, 4, 8, 10, 16, 32, 100),
    "dpmpp_2m": (2, 4, 8, 10, 16),
}


def nfe(config, sampler: str, steps: int, guidance: float) -> int:
    """Network evaluations per image: steps x evaluations per step x 2 with guidance."""
    per = NFE_PER_STEP.get(sampler, 1) * steps
    if sampler == "heun":
        per -= 1  # Heun's last step (to t = 0) is a plain Euler step
    guided = guidance != 1.0 and bool(config.num_classes or config.text_encoder)
    return per * (2 if guided else 1)


def sweep_plan(cfg, grid: dict[str, Sequence[int]] | None = None) -> list[tuple[str | None, int | None]]:
    """``(sampler, steps)`` pairs to measure a model with config ``cfg`` at: the whole ``grid``
    for a diffusion model, 1/2/4 steps for reflow, 1 and 2 consistency steps (a multistep
    consistency model: its own deterministic steps on the segment boundaries), and
    ``(None, None)`` (the family's own sampling) for the rest."""
    if cfg.family == "consistency":
        from genimage.families.consistency import consistency_settings

        if consistency_settings(cfg.family_config).segments > 1:
            return [(cfg.sampler, cfg.steps)]
        return [("consistency", s) for s in (1, 2)]
    if cfg.family == "diffusion":
        return [(s, k) for s, ks in (grid or DEFAULT_GRID).items() for k in ks]
    if cfg.family == "reflow":
        return [(cfg.sampler, k) for k in (1, 2, 4)]
    return [(None, None)]


def sweep(loaded_models: Sequence[tuple[str, Any]], reference_features: torch.Tensor, feature_net, n: int = 1000,
          seed: int = 0, grid: dict[str, Sequence[int]] | None = None, dataset=None,
          progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Rows ``{"model", "sampler", "steps", "nfe", "fd", "seconds", "images_per_s"}``.

    Args:
        loaded_models: ``(name, LoadedGenerator)`` pairs; the first diffusion model gets the full
            ``grid``; consistency models are run with 1 and 2 steps (a multistep one with its
            own steps); other models at their defaults.
        reference_features: Features of the reference images.
        feature_net: The net that made them.
    """
    from genimage.generation import SamplingOptions

    rows = []
    for name, lg in loaded_models:
        cfg = lg.config
        cond = conditions_for(cfg, n, dataset)
        for sampler, steps in sweep_plan(cfg, grid):
            kwargs = {}
            if sampler is not None:
                kwargs["options"] = dataclasses.replace(SamplingOptions.defaults(cfg), sampler=sampler, steps=steps)
            images, secs = draw_samples(lg.model, n, seed, cond, **kwargs)
            fd = frechet_distance(feature_net.features(images), reference_features)
            guidance = cfg.guidance if sampler is not None else 1.0
            row = {"model": name, "family": cfg.family, "sampler": sampler or cfg.family, "steps": steps,
                   "nfe": nfe(cfg, sampler, steps, guidance) if sampler else lg.model.nfe_per_sample,
                   "fd": fd, "seconds": round(secs, 3), "images_per_s": round(n / secs, 1)}
            rows.append(row)
            if progress is not None:
                progress(f"{name} {row['sampler']} {steps} steps: FD {fd:.3f}")
    return rows
