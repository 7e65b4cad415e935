"""Can a noise-space mark (Gaussian Shading) be read back from a PIXEL model's images? (issue 18 item 1)

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/noise_watermark_pixel.py [-n 300] [--model digits]
        [--steps 16 32] [--attacks] [--exact] [--patterns 1 16 64] [--inversions null label]

No autoencoder stands between the image and the noise here, unlike the latent shapes model
(``benchmarks/noise_watermark.py``). For ``n`` seeds (labels ``seed mod 10``), generated with
Gaussian-Shading noise (the key's message, :mod:`genimage.provenance.noise_mark`) and without,
the Euler ODE is inverted (:func:`genimage.provenance.noise_mark.detect`, the model's schedule)
with the null label and no guidance, and by label search (once per class with the model's
guidance, best class kept), from:

- the saved 8-bit image (what ``genimage detect`` would see);
- with ``--exact``, the float output of the sampler (an upper bound).

Real eval-split images are the second negative set. Reported: mean sign agreement, median ``z``,
the fraction called marked at ``z > 3.09`` (p < 0.001), and TPR at the 1% FPR threshold of the
unmarked + real scores. ``--attacks`` adds Gaussian noise and brightness on the 8-bit images
(geometric attacks and JPEG are meaningless at 8x8 pixels). Cost: FD of the marked and the
unmarked 8-bit samples to the real digits (train + eval split, the digits feature net) and the
share recognized by the digits classifier (confidence >= 0.9) with its label accuracy; a second
unmarked set (seeds n..2n-1) shows how much FD moves by the seeds alone. ``--patterns`` makes one
marked set per number of keyed sign patterns ``M`` (:func:`genimage.provenance.noise_mark.shade`),
each scored against its ``M`` patterns, and reports how often the right pattern wins.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from genimage.data.builtin import load_builtin
from genimage.generation import generate
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance
from genimage.metrics.recognizability import digits_recognizability
from genimage.pipeline import Pipeline
from genimage.provenance import dwtdct
from genimage.provenance import noise_mark as N
from genimage.provenance import watermark as wm
from genimage.samplers.noise import generators_for_seeds, randn


def quantise(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def _noise(seeds: list[int], pipe) -> torch.Tensor:
    """The seeds' ordinary initial noise (what picks each image's pattern)."""
    c, s = pipe.config.channels, pipe.config.image_size
    return randn((len(seeds), c, s, s), generators_for_seeds(seeds))


def _quality_over_seed_sets(args, pipe, entry: dict, real: torch.Tensor, net) -> None:
    """FD, recall and coverage (digits features, to all real digits) of ``--fd-sets`` disjoint
    seed sets of ``n``, unmarked and marked with each ``M``: the spread over sets is the noise
    a quality cost must exceed to be measurable."""
    from genimage.metrics.prdc import prdc

    d, n = pipe.loaded.denoiser, args.n
    o = pipe.options(steps=args.steps[0], bf16=False)
    feats = net.features(real)
    rows = {"unmarked": None, **{f"marked M={m}": m for m in args.patterns}}
    print(f"\n| noise ({args.fd_sets} disjoint sets of {n} seeds, {args.steps[0]} steps) | FD mean ± sd (per set) | "
          "recall mean ± sd | coverage mean ± sd |")
    print("|---|---|---|---|")
    for name, m in rows.items():
        fds, rec, cov = [], [], []
        for k in range(args.fd_sets):
            sd = list(range(k * n, (k + 1) * n))
            x = quantise(generate(d, pipe.config, pipe.conditioner, seeds=sd, labels=[v % 10 for v in sd], options=o,
                                  noise_mark=None if m is None else {**entry, "patterns": m}))
            f = net.features(x)
            fds.append(frechet_distance(f, feats))
            q = prdc(feats, f)
            rec.append(q["recall"])
            cov.append(q["coverage"])
        cell = lambda v, p: f"{np.mean(v):.{p}f} ± {np.std(v, ddof=1):.{p}f}"  # noqa: E731
        print(f"| {name} | {cell(fds, 2)} ({', '.join(f'{v:.1f}' for v in fds)}) | {cell(rec, 3)} | {cell(cov, 3)} |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--model", default="digits")
    ap.add_argument("--steps", type=int, nargs="+", default=[16])
    ap.add_argument("--attacks", action="store_true")
    ap.add_argument("--exact", action="store_true", help="also invert the float outputs (before 8-bit rounding)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--patterns", type=int, nargs="+", default=[1],
                    help="numbers of keyed sign patterns the marked images are spread over (one marked set each)")
    ap.add_argument("--inversions", nargs="*", choices=("null", "label"), default=["null", "label"])
    ap.add_argument("--fd-sets", type=int, default=0,
                    help="also FD, recall and coverage over this many disjoint seed sets of n, unmarked and each M")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = Pipeline.from_pretrained(args.model)
    if pipe.config.autoencoder:
        ap.error(f"{args.model} is a latent model; use benchmarks/noise_watermark.py")
    d = pipe.loaded.denoiser
    key = wm.watermark_key()
    msg = dwtdct.default_message(key)
    entry = {"method": N.METHOD, "key_id": wm.key_id(key), "message": msg.hex()}
    n = args.n
    seeds = list(range(n))
    data = load_builtin("digits", split="eval") if args.model.startswith("digits") else None
    real = torch.stack([data[i]["image"] for i in range(min(n, len(data)))])  # FD also uses them
    train = load_builtin("digits", split="train")
    load_train = torch.stack([train[i]["image"] for i in range(len(train))])
    net = load_feature_net("digits")
    c, s = pipe.config.channels, pipe.config.image_size
    print(f"{args.model}: n = {n} marked, {n} unmarked, {len(real)} real; noise {c}x{s}x{s} ({c * s * s} elements); "
          f"public default key, message {msg.hex()}")
    print("\n| sampler steps | patterns M | input to the inversion | inversion | agreement marked / unmarked / real | median z "
          "marked / unmarked / real | called marked (z > 3.09) marked / unmarked / real | right pattern | TPR at 1% FPR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for steps in args.steps:
        o = pipe.options(steps=steps, bf16=False)
        gen = lambda sd, mark: generate(d, pipe.config, pipe.conditioner, seeds=sd, labels=[v % 10 for v in sd],  # noqa: E731
                                        options=o, noise_mark=mark)
        out = {"unmarked": gen(seeds, None)}
        for m in args.patterns:
            out[f"marked M={m}"] = gen(seeds, {**entry, "patterns": m})
        inputs = {"saved 8-bit image": {k: quantise(v) for k, v in out.items()}}
        if args.exact:
            inputs["exact sampler output (float)"] = dict(out)
        if args.attacks:
            g = torch.Generator().manual_seed(0)
            for std in (2, 5):
                inputs[f"8-bit, Gaussian noise std {std} levels"] = {
                    k: quantise(quantise(v) + torch.randn(v.shape, generator=g) * std / 127.5) for k, v in out.items()}
            inputs["8-bit, brightness x1.2"] = {k: quantise((quantise(v) + 1) * 1.2 - 1) for k, v in out.items()}
        for name, imgs in inputs.items():
            imgs = dict(imgs)
            if name.startswith("exact") or name.startswith("saved"):
                imgs["real"] = real
            elif "noise" in name:
                std = float(name.split("std ")[1].split()[0])
                imgs["real"] = quantise(real + torch.randn(real.shape, generator=torch.Generator().manual_seed(1))
                                        * std / 127.5)
            else:
                imgs["real"] = quantise((real + 1) * 1.2 - 1)
            for search in args.inversions:
                # invert each set once; score it against 1..M patterns (the scoring is cheap)
                inv = {k: N.invert_images(pipe, v, steps=steps, label_search=search == "label") for k, v in imgs.items()}
                for m in args.patterns:
                    res = {k: N.score_candidates(inv[k], key, msg, m) for k in ("unmarked", "real", f"marked M={m}")}
                    res["marked"] = res[f"marked M={m}"]
                    neg = torch.cat([res["unmarked"]["z"], res["real"]["z"]]).numpy()
                    thr = np.quantile(neg, 0.99)
                    tpr = float((res["marked"]["z"].numpy() > thr).mean())
                    ks = ("marked", "unmarked", "real")
                    cells = [" / ".join(f"{float(res[k]['agreement'].mean()):.3f}" for k in ks),
                             " / ".join(f"{float(res[k]['z'].median()):.1f}" for k in ks),
                             " / ".join(f"{float((res[k]['z'] > N.DETECTION_Z).float().mean()):.2f}" for k in ks)]
                    right = float((res["marked"]["pattern"] == N.pattern_index(key, _noise(seeds, pipe), m)).float().mean())
                    how = "label search, guided" if search == "label" else "null label, no guidance"
                    print(f"| {steps} | {m} | {name} | {how} | " + " | ".join(cells) + f" | {right:.2f} | {tpr:.3f} |",
                          flush=True)
        feats = net.features(torch.cat([real, load_train]))
        other = list(range(n, 2 * n))  # FD's own spread: the same statistic on a second set of seeds
        for k, x in [*out.items(), ("unmarked, seeds n..2n-1", gen(other, None))]:
            x = quantise(x)
            lab = [v % 10 for v in (other if "seeds n" in k else seeds)]
            r = digits_recognizability(x, lab, net=net)
            print(f"  {steps} steps, {k}: FD to the 1,797 real digits {frechet_distance(net.features(x), feats):.2f}, "
                  f"recognized {r['confident_fraction']:.3f}, label accuracy {r['accuracy_vs_labels']:.3f}", flush=True)
    if args.fd_sets:
        _quality_over_seed_sets(args, pipe, entry, torch.cat([real, load_train]), net)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
