"""``genimage compare``: one table for models of different families on the same data.

Every model is measured the same way, in one feature space: Fréchet distance, KID,
precision/recall, bits/dim where the family defines a likelihood, network evaluations per
image and images/s (same sample count, same seeds, same machine, one after the other).
Models are given as folders (``genimage compare --train FAMILY`` trains them first, with
``genimage train``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from genimage.errors import GenimageError
from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples, mean_bits_per_dim
from genimage.utils.atomic import atomic_write_text

COLUMNS = ("family", "fd", "kid", "precision", "recall", "bits_per_dim", "nfe", "images_per_s")


def measure(name: str, model_ref: str | Path, dataset, reference: torch.Tensor, ref_features: torch.Tensor, net,
            n: int, seed: int) -> tuple[dict[str, Any], torch.Tensor]:
    """One row of the table, and the samples it was measured on (metrics by
    :func:`genimage.metrics.quality.evaluate_samples`, reference features passed in)."""
    from genimage.families.io import load_generator
    from genimage.metrics.quality import evaluate_samples

    lg = load_generator(model_ref)
    cfg = lg.config
    if (cfg.image_size, cfg.channels) != (reference.shape[-1], reference.shape[1]):
        raise GenimageError(f"{name} makes {cfg.image_size}px x {cfg.channels} images; the data is "
                            f"{reference.shape[-1]}px x {reference.shape[1]}")
    cond = conditions_for(cfg, n, dataset)
    samples, secs = draw_samples(lg.model, n, seed, cond)
    m = evaluate_samples(samples, reference, net, kid_subsets=50, kid_subset_size=min(500, n, len(reference)),
                         seed=seed, labels=cond if cfg.num_classes else None, reference_features=ref_features)
    row = {"model": name, "family": cfg.family, "folder": str(lg.folder), "fd": m["fd"], "kid": m["kid"],
           "precision": m["precision"], "recall": m["recall"], "bits_per_dim": None,
           "nfe": lg.model.nfe_per_sample, "images_per_s": round(n / secs, 1)}
    if lg.model.has_likelihood:
        row["bits_per_dim"] = mean_bits_per_dim(lg.model, reference)
        row["bits_per_dim_is_bound"] = lg.model.likelihood_is_bound
    if "recognizability" in m:
        row["recognized"] = m["recognizability"]["confident_fraction"]
        row["classes_present"] = m["recognizability"]["classes_present"]
    return row, samples


def compare(models: Sequence[tuple[str, str | Path]], data: str, out_dir: Path, *, n: int = 1000, seed: int = 0,
            features: str | None = None, reference_limit: int = 5000,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure every ``(name, model)`` and write ``compare.json``, ``compare.md`` and ``compare.png``."""
    from genimage.data.image_io import save_image_grid
    from genimage.data.source import open_dataset
    from genimage.evaluation.report import default_features, load_features

    if not models:
        raise GenimageError("nothing to compare: give --model NAME=FOLDER and/or --train FAMILY")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {"split": "train"} if data.startswith("builtin:") else {}
    dataset = open_dataset(data, seed=0, **options)
    reference = dataset_images(dataset, reference_limit)
    net = load_features(features or default_features(data))
    ref_features = net.features(reference)
    rows = []
    for name, ref in models:
        t0 = time.perf_counter()
        row, samples = measure(name, ref, dataset, reference, ref_features, net, n, seed)
        save_image_grid(samples[:64], out_dir / f"samples_{_safe(name)}.png")
        rows.append(row)
        log(f"{name}: FD {row['fd']:.3f} ({time.perf_counter() - t0:.0f}s)")
    table = markdown_table(rows, net.source)
    atomic_write_text(out_dir / "compare.md", table)
    atomic_write_text(out_dir / "compare.json", json.dumps({"data": data, "n": n, "seed": seed,
                                                            "features": net.source, "rows": rows}, indent=2))
    plot(rows, out_dir / "compare.png")
    return rows


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]], features: str) -> str:
    cols = ["model", *COLUMNS] + (["recognized", "classes_present"] if any("recognized" in r for r in rows) else [])
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |\n" for r in rows)
    return head + body + f"\nfeatures: {features}\n"


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """FD (bars, log scale) and images/s per model."""
    from genimage.evaluation.plots import _figure, _save

    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r["model"] for r in rows]
    axes[0].bar(names, [r["fd"] for r in rows], color="tab:blue")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("Fréchet distance (lower is better)")
    axes[1].bar(names, [r["images_per_s"] for r in rows], color="tab:green")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("images / s")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)
