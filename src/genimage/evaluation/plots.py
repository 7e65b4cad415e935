"""Figures of the evaluation report (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from genimage.utils.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _figure()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def quality_vs_nfe(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """FD against network evaluations (left) and against seconds per image (right), one line
    per (model, sampler)."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']}: {r['sampler']}", []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["nfe"])
        style = "o-" if len(rs) > 1 else "s"
        axes[0].plot([r["nfe"] for r in rs], [r["fd"] for r in rs], style, label=label)
        axes[1].plot([1000.0 / r["images_per_s"] for r in rs], [r["fd"] for r in rs], style, label=label)
    for ax, xl in zip(axes, ("network evaluations per image", "milliseconds per image")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("Frechet distance (lower is better)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def training_curves(metrics_jsonl: Path, path: Path) -> Path | None:
    """Loss (and any other logged metric) against step from a run's ``metrics.jsonl``."""
    if not metrics_jsonl.is_file():
        return None
    recs = [json.loads(ln) for ln in metrics_jsonl.read_text().splitlines() if ln.strip()]
    if not recs:
        return None
    keys = [k for k in recs[-1] if k not in ("step", "lr", "wall_time_s", "images_per_s")]
    plt = _figure()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    steps = [r["step"] for r in recs]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r.get(k, float("nan")) for r in recs], lw=0.8)
        ax.set_xlabel("step")
        ax.set_title(k)
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def nearest_pairs(samples: torch.Tensor, train: torch.Tensor, pairs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Each closest (sample, nearest training image) pair side by side, one pair per column."""
    from genimage.data.image_io import save_image_grid

    if not pairs:
        return path
    top = torch.stack([samples[p["sample"]] for p in pairs])
    bottom = torch.stack([train[p["train"]] for p in pairs])
    save_image_grid(torch.cat([top, bottom]), path, nrow=len(pairs))
    return path
