"""The noise-space mark (Gaussian Shading) on an RGB pixel model: detection under attack and its
quality cost, side by side (issue 18 items 1 and 4).

    OMP_NUM_THREADS=1 python benchmarks/noise_watermark_attacks.py --model MODEL [-n 500]
        [--patterns 1 256 65536] [--detectors signs search] [--attacks "none,JPEG 90"]
        [--fd-sets 4] [--image-size 64] [--json out.json]

For ``n`` seeds the model generates with its default sampling, once from ordinary noise and once
per ``--patterns M`` from Gaussian-Shading noise spread over ``M`` keyed sign patterns
(:mod:`genimage.provenance.noise_mark`). ``n`` real images of the model's training set (the eval
split of ``--data``) are the second negative set. Every attack of
``benchmarks/watermark_attacks.py`` (JPEG, resizes, crops, rotations, noise, blur, brightness,
contrast) and a regeneration through the same model's img2img at strengths 0.3 and 0.6 is applied
to every set as the CLI saves it (8-bit, the pixel pattern mark on top of generated images); the
detector then inverts the sampler (Euler, the model's steps, no conditioning:
:func:`genimage.provenance.noise_mark.invert_images`) and keeps the best of the ``M`` patterns.
Two detectors read the same inversions: ``signs`` (the sign agreement of the noise as inverted,
Gaussian Shading's reading) and ``search`` (the linear correlation of the noise, best of the 129
rotation / centred-zoom / low-pass hypotheses of
:func:`genimage.provenance.noise_sync.hypotheses`, what ``genimage detect --invert`` does). TPR is
the fraction of attacked marked images above the 99th percentile of the attacked unmarked + real
scores (1% FPR on 2n negatives); bit accuracy is that of the majority-decoded 32-bit message.

Quality (``--fd-sets K``): FD, recall and coverage (k = 5) in the domain's feature network to
``--fd-real`` real images, over ``K`` disjoint seed sets of ``n`` each, unmarked and marked with
each ``M``; the spread between seed sets is what a cost must exceed to be measurable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watermark_attacks import ATTACKS, REGENERATE, selected_attacks, tpr_at_fpr  # noqa: E402

from genimage.data.builtin import load_builtin  # noqa: E402
from genimage.data.types import image_from_uint8, image_to_uint8  # noqa: E402
from genimage.editing.spec import EditSpec  # noqa: E402
from genimage.pipeline import Pipeline  # noqa: E402
from genimage.provenance import noise_mark as N  # noqa: E402
from genimage.provenance.dwtdct import default_message  # noqa: E402
from genimage.provenance.noise_sync import hypotheses  # noqa: E402
from genimage.provenance.watermark import embed, key_id, watermark_key  # noqa: E402
from genimage.samplers.noise import generators_for_seeds, randn  # noqa: E402

def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    return [image_to_uint8(y) for y in x]


def saved(x: torch.Tensor, key: str) -> list[np.ndarray]:
    """Generated images as the CLI saves them: 8-bit, with the pixel pattern mark on top."""
    return [image_to_uint8(embed(image_from_uint8(image_to_uint8(y)), key)) for y in x]


def from_uint8(arrs: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([image_from_uint8(a) for a in arrs])


def attack(pipe, name: str, arrs: list[np.ndarray], seed0: int) -> list[np.ndarray]:
    if name in REGENERATE:
        seeds = list(range(seed0, seed0 + len(arrs)))
        return to_uint8(pipe(seeds, edit=EditSpec(from_uint8(arrs), REGENERATE[name]), batch_size=100))
    return [np.asarray(ATTACKS[name](Image.fromarray(a), seed0 + i).convert("RGB")) for i, a in enumerate(arrs)]


def quality(pipe, entry: dict, patterns: list[int], n: int, sets: int, real_feats: torch.Tensor, net, key: str,
            first_set: int = 0) -> dict:
    """FD / recall / coverage over ``sets`` disjoint seed sets (``first_set``, ``first_set + 1``, ...),
    unmarked and per ``M``."""
    from genimage.metrics.frechet import frechet_distance
    from genimage.metrics.prdc import prdc

    rows = {"unmarked": None, **{f"marked M={m}": m for m in patterns}}
    out = {}
    print(f"\n| noise ({sets} disjoint sets of {n} seeds) | FD mean ± sd (per set) | recall mean ± sd | "
          "coverage mean ± sd | precision mean ± sd |")
    print("|---|---|---|---|---|")
    for name, m in rows.items():
        vals = {"fd": [], "recall": [], "coverage": [], "precision": []}
        for k in range(sets):
            seeds = list(range(100_000 + (first_set + k) * n, 100_000 + (first_set + k + 1) * n))
            pipe.noise_mark = None if m is None else {**entry, "patterns": m}
            x = from_uint8(saved(pipe(seeds, batch_size=100), key))  # as the CLI saves them
            f = net.features(x)
            vals["fd"].append(frechet_distance(f, real_feats))
            q = prdc(real_feats, f)
            for stat in ("recall", "coverage", "precision"):
                vals[stat].append(q[stat])
        cell = lambda v, p: f"{np.mean(v):.{p}f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.{p}f}"  # noqa: E731
        print(f"| {name} | {cell(vals['fd'], 2)} ({', '.join(f'{v:.1f}' for v in vals['fd'])}) | "
              f"{cell(vals['recall'], 3)} | {cell(vals['coverage'], 3)} | {cell(vals['precision'], 3)} |", flush=True)
        out[name] = vals
    pipe.noise_mark = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="an RGB pixel-space model (bundled name or folder)")
    ap.add_argument("--data", default="shapes", help="built-in data set of the real negatives and the FD reference")
    ap.add_argument("--features", default="shapes", help="feature network for FD / recall / coverage")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--patterns", type=int, nargs="+", default=[65536])
    ap.add_argument("--detectors", nargs="+", choices=sorted(DETECTORS), default=["signs", "search"])
    ap.add_argument("--attacks", help="comma-separated attack names (default: all, regeneration included)")
    ap.add_argument("--fd-sets", type=int, default=0)
    ap.add_argument("--fd-first-set", type=int, default=0, help="index of the first seed set (more sets later)")
    ap.add_argument("--quality-only", action="store_true", help="skip the attack table (only --fd-sets)")
    ap.add_argument("--fd-real", type=int, default=5000, help="real images of the FD / recall reference (train split)")
    ap.add_argument("--image-size", type=int, help="generate, attack and invert at this size instead of the "
                    "model's own (a convolutional model trained at 32 px samples larger images too: how the "
                    "mark scales with the number of noise elements)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = Pipeline.from_pretrained(args.model)
    pipe.noise_mark = None  # each set says whether it is marked (a bundled model may mark by default)
    if args.image_size:
        pipe.config = dataclasses.replace(pipe.config, image_size=args.image_size)
    if pipe.config.autoencoder or pipe.conditioner.uses_labels or pipe.conditioner.uses_text:
        ap.error("this benchmark is for unconditional pixel-space models")
    key = watermark_key()
    msg = default_message(key)
    entry = {"method": N.METHOD, "key_id": key_id(key), "message": msg.hex()}
    n, s = args.n, pipe.config.image_size
    result = {"model": args.model, "n": n, "image_size": s}
    if not args.quality_only:
        result["rows"] = attack_table(args, ap, pipe, key, msg, entry, t0)
    if args.fd_sets:
        from genimage.metrics.features import load_feature_net

        net = load_feature_net(args.features)
        train = load_builtin(args.data, split="train", image_size=s, length=args.fd_real)
        real_feats = net.features(torch.stack([train[i]["image"] for i in range(len(train))]))
        result["quality"] = quality(pipe, entry, args.patterns, n, args.fd_sets, real_feats, net, key,
                                    args.fd_first_set)
    print(f"\ntotal {time.time() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def attack_table(args, ap, pipe, key: str, msg: bytes, entry: dict, t0: float) -> dict:
    """The attack table (module docstring); prints it and returns its rows."""
    n = args.n
    seeds = list(range(n))
    c, s = pipe.config.channels, pipe.config.image_size
    opts = pipe.options()
    sets = {"unmarked": saved(pipe(seeds, batch_size=100), key)}
    for m in args.patterns:
        pipe.noise_mark = {**entry, "patterns": m}
        sets[f"M={m}"] = saved(pipe(seeds, batch_size=100), key)
    pipe.noise_mark = None
    data = load_builtin(args.data, split="eval", image_size=s, length=n)
    sets["real"] = [image_to_uint8(data[i]["image"]) for i in range(n)]
    eps = randn((n, c, s, s), generators_for_seeds(seeds))
    print(f"{args.model}: noise {c}x{s}x{s} ({c * s * s} elements), sampler {opts.sampler} {opts.steps} steps, "
          f"bf16 {opts.bf16}; n = {n} per set; real = {args.data} eval split; setup {time.time() - t0:.0f}s")
    names = selected_attacks(ap, args.attacks)
    cols = [(m, d) for m in args.patterns for d in args.detectors]
    print("\n| attack | " + " | ".join(f"M = {m}, {d}: TPR@1%FPR / bit acc. / right pattern / median z marked, unmarked"
                                       for m, d in cols) + " | s |")
    print("|---|" + "---|" * len(cols) + "---|")
    rows, sums = {}, np.zeros(len(cols))
    for name in names:
        ta = time.time()
        inv = {}
        for tag, (k, arrs) in enumerate(sets.items()):
            attacked = attack(pipe, name, arrs, 1000 * (tag + 1))
            inv[k] = N.invert_images(pipe, from_uint8(attacked))
        cells, row = [], {}
        for j, (m, d) in enumerate(cols):
            res = {k: score(inv[k], key, msg, m, d) for k in ("unmarked", "real", f"M={m}")}
            cell = detection_cell(res[f"M={m}"], res["unmarked"], res["real"])
            right = float((res[f"M={m}"]["pattern"] == N.pattern_index(key, eps, m)).float().mean())
            cell["right_pattern"] = right
            row.setdefault(m, {})[d] = cell
            cells.append(f"{cell['tpr']:.3f} / {cell['bit_accuracy']:.3f} / {right:.2f} / {cell['z_marked']:.1f}, "
                         f"{cell['z_unmarked']:.1f}")
            if name != "none":
                sums[j] += cell["tpr"]
        rows[name] = row
        print(f"| {name} | " + " | ".join(cells) + f" | {time.time() - ta:.0f} |", flush=True)
    k = len([a for a in names if a != "none"])
    if k:
        print(f"| **mean over the {k} attacks** | " + " | ".join(f"{v / k:.3f}" for v in sums) + " | |")
    return rows


def detection_cell(marked: dict, unmarked: dict, real: dict) -> dict:
    """One attack's numbers from three sets' scores: TPR at the 99th percentile of the unmarked +
    real scores (1% FPR), the marked images' mean bit accuracy, median z per set, the threshold."""
    neg = torch.cat([unmarked["z"], real["z"]]).numpy()
    pos = marked["z"].numpy()
    return {"tpr": tpr_at_fpr(pos, neg), "bit_accuracy": float(marked["bit_accuracy"].mean()),
            "z_marked": float(np.median(pos)), "z_unmarked": float(np.median(unmarked["z"].numpy())),
            "z_real": float(np.median(real["z"].numpy())), "threshold": float(np.quantile(neg, 0.99))}


DETECTORS = {"signs": {"soft": False, "sync": False}, "search": {"soft": True, "sync": True}}


def score(inv: torch.Tensor, key: str, msg: bytes, patterns: int, detector: str) -> dict:
    """One set's scores by ``detector`` (:data:`DETECTORS`) from its inversions ``(1, B, C, H, W)``."""
    how = DETECTORS[detector]
    return N.score_inverted(inv, key, msg, patterns, hypotheses() if how["sync"] else None, how["soft"])


if __name__ == "__main__":
    main()
