"""How correct is the shapes analyzer on three-object scenes? Measured on the dataset's own images.

    nice -n 10 python benchmarks/shapes3_scorer.py [--n 1000] [--sizes 32,64] [--seed 0]
    nice -n 10 python benchmarks/shapes3_scorer.py --sizes 32 --reconstruct src/genimage/weights/shapes/autoencoder

For each image size, ``--n`` three-object items (half from ``split="train"``, half from
``split="eval"``, ``three_object_share=1``) are rendered and scored with
:func:`genimage.data.shapes_analyzer.score` against

* their own caption: the fraction accepted (count, binding, each relation, position and
  overall; ideally 1), under the default loose position rule and under the dataset's strict
  one (``min_offset=MIN_RELATION_OFFSET``);
* wrong captions: the first or the second relation replaced by its opposite, one object's
  colour or shape changed, or only the first two objects named. The fraction of these
  *rejected* is reported (ideally 1). Flipping a relation between two identical objects
  ("a red circle above a red circle" reads both ways) is skipped.

"Correct" in BENCHMARKS.md is the accept rate on true captions; the reject rates show the
scorer is not trivially permissive. Prints a markdown table.

``--reconstruct AUTOENCODER`` scores the autoencoder's reconstructions (encode to the
posterior mean, decode) instead of the rendered images: the ceiling of a latent model
trained with that autoencoder on three-object scenes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above"}


def wrong_captions(spec, rng: np.random.Generator) -> dict:
    """One wrong caption per kind for a three-object :class:`CaptionSpec` (``None`` where undefined)."""
    from genimage.data.shapes import PALETTE, SHAPES, CaptionSpec, ObjectSpec

    objs, rels = list(spec.objects), list(spec.relations)
    out = {}
    for k, name in ((0, "relation 1 flipped"), (1, "relation 2 flipped")):
        flipped = list(rels)
        flipped[k] = OPPOSITE[rels[k]]
        out[name] = None if objs[k] == objs[k + 1] else CaptionSpec(spec.objects, *flipped)
    k = int(rng.integers(3))
    colour = [*objs]
    colour[k] = ObjectSpec(str(rng.choice([c for c in PALETTE if c != objs[k].colour])), objs[k].shape)
    out["colour changed"] = CaptionSpec(tuple(colour), *rels)
    k = int(rng.integers(3))
    shape = [*objs]
    shape[k] = ObjectSpec(objs[k].colour, str(rng.choice([s for s in SHAPES if s != objs[k].shape])))
    out["shape changed"] = CaptionSpec(tuple(shape), *rels)
    out["third object dropped"] = CaptionSpec(tuple(objs[:2]), rels[0])
    return out


def _reconstruct(ae, image):
    """The autoencoder's reconstruction of a uint8 image, as a float tensor (3, H, W) in [-1, 1]."""
    import torch

    from genimage.data.types import image_from_uint8

    with torch.no_grad():
        return ae.model.decode(ae.model.encode(image_from_uint8(image)[None]))[0]


def measure(size: int, n: int, seed: int, ae=None) -> dict:
    from genimage.data.shapes import MIN_RELATION_OFFSET, ShapesDataset
    from genimage.data.shapes_analyzer import score

    rng = np.random.default_rng(seed)
    acc = {k: 0 for k in ("count", "binding", "relation 1", "relation 2", "position", "overall", "strict overall")}
    rejected: dict[str, list[bool]] = {}
    t0 = time.perf_counter()
    for split, count in (("train", n // 2), ("eval", n - n // 2)):
        ds = ShapesDataset(length=10**6, image_size=size, split=split, seed=seed, three_object_share=1.0)
        for i in range(count):
            scene, image = ds.scene(i), ds.render(i)
            if ae is not None:
                image = _reconstruct(ae, image)
            s = score(image, scene.caption)
            for key, ok in (("count", s.count_ok), ("binding", s.binding_ok), ("relation 1", s.relations_ok[0]),
                            ("relation 2", s.relations_ok[1]), ("position", s.position_ok), ("overall", s.overall)):
                acc[key] += bool(ok)
            acc["strict overall"] += score(image, scene.caption, min_offset=MIN_RELATION_OFFSET).overall
            for kind, wrong in wrong_captions(scene.spec, rng).items():
                if wrong is not None:
                    rejected.setdefault(kind, []).append(not score(image, wrong).overall)
    seconds = time.perf_counter() - t0
    return {"size": size, "n": n, "accept": {k: v / n for k, v in acc.items()},
            "reject": {k: (sum(v) / len(v), len(v)) for k, v in rejected.items()}, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="three-object images per size (half train, half eval)")
    parser.add_argument("--sizes", default="32,64", help="comma-separated image sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconstruct", default=None, help="autoencoder folder: score its reconstructions")
    args = parser.parse_args()
    ae = None
    if args.reconstruct:
        from genimage.latent.autoencoder import load_autoencoder

        ae = load_autoencoder(args.reconstruct)
    results = [measure(int(s), args.n, args.seed, ae) for s in args.sizes.split(",")]
    keys = list(results[0]["accept"])
    print("true captions accepted:\n")
    print("| size | n | " + " | ".join(keys) + " | seconds |")
    print("|---" * (len(keys) + 3) + "|")
    for r in results:
        print(f"| {r['size']} | {r['n']} | " + " | ".join(f"{r['accept'][k]:.4f}" for k in keys)
              + f" | {r['seconds']:.0f} |")
    kinds = list(results[0]["reject"])
    print("\nwrong captions rejected (n in brackets):\n")
    print("| size | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for r in results:
        print(f"| {r['size']} | " + " | ".join(f"{r['reject'][k][0]:.4f} ({r['reject'][k][1]})" for k in kinds) + " |")


if __name__ == "__main__":
    main()
