"""``genimage eval MODEL --data ...``: one report of quality, likelihood, faithfulness and
memorization, as ``report.json`` (numbers) and ``report.html`` (numbers + figures).

Everything is measured in one feature space, named in the report: a genimage domain
network for the built-in datasets (not comparable to published FID) or Inception when the
user points to its weights file (comparable).
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genimage.errors import GenimageError
from genimage.evaluation import plots
from genimage.evaluation.sampling import conditions_for, dataset_images, draw_samples, mean_bits_per_dim
from genimage.utils.atomic import atomic_write_text

FEATURES_BY_DATA = {"builtin:digits": "digits", "builtin:shapes": "shapes", "builtin:shapes3": "shapes"}


GENERIC_FEATURES = "generic"
"""The features of data no domain network fits (folders, ``builtin:photos``)."""


def default_features(data: str) -> str:
    """The dataset's domain feature net, else the generic one (:data:`GENERIC_FEATURES`)."""
    return FEATURES_BY_DATA.get(data.split("?")[0], GENERIC_FEATURES)


def domain_report(net, samples: torch.Tensor, reference: torch.Tensor) -> dict[str, Any] | None:
    """The feature net's domain check of the samples and of the reference data (``None`` for
    features without domain statistics, e.g. Inception); warnings under ``"warnings"``."""
    check = getattr(net, "domain_check", None)
    if check is None or getattr(net, "domain", None) is None:
        return None
    out = {"samples": check(samples, what="samples"), "reference": check(reference, what="reference data")}
    out["warnings"] = [r["warning"] for r in out.values() if r["warning"]]
    return out


def load_features(spec: str):
    """``digits`` / ``shapes`` / a feature-net folder / ``inception:PATH`` (TensorFlow-graph
    input, the default) / ``inception-pytorch-fid:PATH`` (pytorch-fid's resize and scaling)."""
    for prefix, mode in (("inception:", "tensorflow"), ("inception-pytorch-fid:", "pytorch-fid")):
        if spec.startswith(prefix):
            from genimage.metrics.inception import load_inception

            return load_inception(spec[len(prefix):], input_mode=mode)
    from genimage.metrics.features import load_feature_net

    return load_feature_net(spec)


def evaluate_model(model_ref: str, data: str, out_dir: Path, *, n: int = 1000, seed: int = 0, split: str = "train",
                   features: str | None = None, reference_limit: int = 5000, sweep: bool = False,
                   sweep_with: list[tuple[str, str]] | None = None, prompts: int = 0,
                   log: Callable[[str], None] = print, share: tuple[int, int] = (0, 1)) -> dict[str, Any] | None:
    """Measure ``model_ref`` against ``data`` and write the report into ``out_dir``.

    Args:
        model_ref: Bundled model name or model/run folder (any family).
        data: Dataset spec (``builtin:digits``, a folder, ...): reference and training images.
        out_dir: Folder for ``report.json``, ``report.html`` and figures.
        n: Samples to draw.
        seed: Image ``i`` uses seed ``seed + i``.
        split: Split of a built-in dataset used as reference / training set.
        features: Feature network (default: the dataset's domain network, else ``generic``).
        reference_limit: At most this many reference images.
        sweep: Also sweep samplers x steps (diffusion-family models).
        sweep_with: ``(name, model)`` pairs added to the sweep (e.g. consistency or reflow
            students: 1-4 step points on the same plot).
        prompts: Also measure shapes prompt accuracy on this many prompts per split.
        log: Progress messages.
        share: ``(rank, world)`` in a process group of ``world`` processes: each draws its
            share of the samples (:func:`~genimage.evaluation.sampling.draw_samples`) and
            rank 0 measures and writes the report; the other ranks return ``None``. The
            sweep and prompt accuracy run in one process only.
    """
    from tqdm import tqdm

    from genimage.data.image_io import save_image_grid
    from genimage.data.source import open_dataset
    from genimage.families.io import load_generator
    from genimage.metrics.quality import evaluate_samples

    if n < 2:
        raise GenimageError(f"-n must be at least 2, got {n}")
    if share[1] > 1 and (sweep or prompts):
        raise GenimageError("--sweep and --prompts run in one process; drop them or --nproc")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lg = load_generator(model_ref)
    cfg = lg.config
    options = {"split": split} if data.startswith("builtin:") else {}
    dataset = open_dataset(data, image_size=cfg.image_size, seed=0, **options)
    if (dataset.image_size, dataset.channels) != (cfg.image_size, cfg.channels):
        raise GenimageError(f"{data} gives {dataset.image_size}px x {dataset.channels} channels; the model makes "
                            f"{cfg.image_size}px x {cfg.channels}")
    net = load_features(features or default_features(data))
    reference = dataset_images(dataset, reference_limit)
    log(f"model {model_ref} ({cfg.family}), {len(reference)} reference images, features: {net.source}")

    cond = conditions_for(cfg, n, dataset)
    bar = tqdm(total=n, desc="sampling", unit="img", disable=None)
    done = {"v": 0}

    def tick(k: int) -> None:
        bar.update(k - done["v"])
        done["v"] = k

    samples, secs = draw_samples(lg.model, n, seed, cond, progress=tick, share=share)
    bar.close()
    if samples is None:  # another rank measures
        return None
    labels = torch.tensor(cond) if cfg.num_classes and cond is not None and not cfg.text_encoder else None
    log("measuring FD, KID, precision/recall/density/coverage and memorization")
    quality = evaluate_samples(samples, reference, net, train_images=reference, labels=labels)
    report: dict[str, Any] = {
        "model": str(model_ref), "folder": str(lg.folder), "weights_sha256": lg.weights_sha256,
        "family": cfg.family, "config": cfg.to_dict(), "parameters": sum(p.numel() for p in lg.model.parameters()),
        "data": data, "split": split, "n_samples": n, "seed": seed, "features": net.source,
        "features_note": ("Inception features: comparable to published FID" if "inception" in net.source.lower()
                          else "domain features: NOT comparable to published FID numbers"),
        "sampling": {"seconds": round(secs, 3), "images_per_s": round(n / secs, 1),
                     "nfe_per_image": lg.model.nfe_per_sample},
        "quality": quality,
    }
    domain = domain_report(net, samples, reference)
    if domain is not None:
        report["domain"] = domain
        for w in domain["warnings"]:
            log(f"warning: {w}")
    if lg.model.has_likelihood:
        report["bits_per_dim"] = {"value": mean_bits_per_dim(lg.model, reference), "is_bound": lg.model.likelihood_is_bound,
                                  "on": f"{len(reference)} reference images"}
    if prompts:
        from genimage.metrics.prompt_accuracy import evaluate_prompts
        from genimage.pipeline import Pipeline

        log(f"prompt accuracy on {prompts} prompts per split")
        report["prompt_accuracy"] = evaluate_prompts(Pipeline.from_pretrained(model_ref), n=prompts, seed=seed)
    figures: dict[str, str] = {}
    save_image_grid(samples[:64], out_dir / "samples.png")
    figures["samples"] = "samples.png"
    pairs = quality["memorization"].get("feature", quality["memorization"]["pixel"])["closest_pairs"]
    plots.nearest_pairs(samples, reference, pairs, out_dir / "nearest.png")
    figures["nearest"] = "nearest.png"
    run_metrics = _run_metrics_file(lg.folder)
    if run_metrics is not None and plots.training_curves(run_metrics, out_dir / "training_curves.png"):
        figures["training_curves"] = "training_curves.png"
    if sweep:
        from genimage.evaluation.sweep import sweep as run_sweep

        log("sampler sweep")
        extra = [(name, load_generator(ref)) for name, ref in (sweep_with or [])]
        rows = run_sweep([(Path(str(model_ref)).name, lg), *extra], net.features(reference), net, n=n, seed=seed,
                         dataset=dataset, progress=log)
        report["sweep"] = rows
        plots.quality_vs_nfe(rows, out_dir / "quality_vs_nfe.png")
        figures["quality_vs_nfe"] = "quality_vs_nfe.png"
    report["figures"] = figures
    report["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=_jsonable))
    atomic_write_text(out_dir / "report.html", render_html(report))
    return report


def _run_metrics_file(folder: Path) -> Path | None:
    """``metrics.jsonl`` of the run a checkpoint folder belongs to (``run/checkpoints/step-N``)."""
    for cand in (folder / "metrics.jsonl", folder.parent.parent / "metrics.jsonl"):
        if cand.is_file():
            return cand
    return None


def _jsonable(obj):
    if torch.is_tensor(obj):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (figures referenced beside it)."""
    q = report["quality"]
    rows = [("family", report["family"]), ("parameters", f"{report['parameters']:,}"),
            ("features", report["features"]), ("", report["features_note"]),
            *(("warning", w) for w in report.get("domain", {}).get("warnings", [])),
            ("samples", report["n_samples"]), ("reference images", q["n_reference"]),
            ("Fréchet distance", q["fd"]), ("KID", f"{q['kid']:.4g} ± {q['kid_std']:.2g}"),
            ("precision", q["precision"]), ("recall", q["recall"]), ("density", q["density"]),
            ("coverage", q["coverage"]), ("network evaluations / image", report["sampling"]["nfe_per_image"]),
            ("images / s", report["sampling"]["images_per_s"])]
    if "bits_per_dim" in report:
        b = report["bits_per_dim"]
        rows.append(("bits/dim" + (" (upper bound, ELBO)" if b["is_bound"] else " (exact)"), b["value"]))
    if "recognizability" in q:
        r = q["recognizability"]
        rows.append(("digits recognized (conf ≥ 0.9)", r["confident_fraction"]))
        rows.append(("digit classes present", r["classes_present"]))
    mem = q["memorization"]
    for space in ("pixel", "feature"):
        if space in mem:
            rows.append((f"copy rate ({space} space, ratio < {mem['threshold']:.3g})", mem[space]["copy_rate"]))
    if "prompt_accuracy" in report:
        for split in ("seen", "held_out"):
            pa = report["prompt_accuracy"][split]
            rows.append((f"prompt accuracy {split}",
                         f"overall {pa['overall']:.3f}, count {pa['count']:.3f}, binding {pa['binding']:.3f}, "
                         f"position {pa['position']:.3f}"))
    table = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    figs = report.get("figures", {})
    captions = {"samples": "Samples (first 64)", "nearest": "Closest samples (top) and their nearest training images (bottom)",
                "quality_vs_nfe": "Quality vs network evaluations and wall-clock", "training_curves": "Training curves"}
    fig_html = "\n".join(f"<figure><img src='{html.escape(f)}' class='{'pix' if k in ('samples', 'nearest') else ''}'>"
                         f"<figcaption>{captions.get(k, k)}</figcaption></figure>" for k, f in figs.items())
    sweep = ""
    if report.get("sweep"):
        head = "<tr><th>model</th><th>sampler</th><th>steps</th><th>NFE</th><th>FD</th><th>images/s</th></tr>"
        body = "\n".join(f"<tr><td>{html.escape(str(r['model']))}</td><td>{r['sampler']}</td><td>{r['steps']}</td>"
                         f"<td>{r['nfe']}</td><td>{r['fd']:.4g}</td><td>{r['images_per_s']}</td></tr>"
                         for r in report["sweep"])
        sweep = f"<h2>Sampler sweep</h2><table>{head}{body}</table>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genimage eval: {html.escape(report['model'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}th{{text-align:left;padding-right:1em}}
td,th{{border-bottom:1px solid #ddd;padding:3px}}img.pix{{image-rendering:pixelated;width:100%}}
figure{{margin:1.5em 0}}</style></head><body>
<h1>genimage eval: {html.escape(report['model'])}</h1>
<p>data {html.escape(report['data'])} (split {html.escape(report['split'])}); weights sha256 {report['weights_sha256'][:16]}…</p>
<table>{table}</table>{sweep}
{fig_html}
<p>Written by genimage in {report['seconds']} s. Numbers: report.json.</p></body></html>
"""
