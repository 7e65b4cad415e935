"""What a model's failures on three-object shapes prompts look like, by kind, with a grid.

    nice -n 10 python benchmarks/shapes3_failures.py [--model shapes] [--n 100] [--split train]
        [--out runs/shapes3_failures]

Generates ``--n`` three-object prompts of the split (seed 0, image ``i`` with seed ``i``, the
model's default sampling, as ``genimage eval prompts --three-object-share 1`` does), scores
each with :func:`genimage.data.shapes_analyzer.score` and puts every failure in one kind,
first match wins:

* ``fewer objects`` / ``more objects``: the number of detected objects is not 3;
* ``binding``: 3 objects, but some caption colour-shape pair is missing;
* ``relation 1`` / ``relation 2`` / ``both relations``: count and binding right, the named
  relation(s) wrong on their own;
* ``no consistent chain``: each relation holds on its own but not through one B.

Prints the counts and the histogram of detected object counts, and writes
``OUT/failures.png``: one row per kind (up to 8 images, 4x nearest-neighbour), captions in
``OUT/failures.txt``.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

KINDS = ("fewer objects", "more objects", "binding", "relation 1", "relation 2", "both relations",
         "no consistent chain")


def failure_kind(s) -> str | None:
    """The kind of a failed :class:`ShapesScore` (``None`` if it passed)."""
    if s.overall:
        return None
    if len(s.detected) != len(s.spec.objects):
        return "fewer objects" if len(s.detected) < len(s.spec.objects) else "more objects"
    if not s.binding_ok:
        return "binding"
    r1, r2 = s.relations_ok
    if not r1 and not r2:
        return "both relations"
    if not r1:
        return "relation 1"
    if not r2:
        return "relation 2"
    return "no consistent chain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--split", default="train", choices=("train", "eval"))
    parser.add_argument("--out", type=Path, default=Path("runs/shapes3_failures"))
    args = parser.parse_args()

    from PIL import Image

    from genimage.data.shapes import sample_captions
    from genimage.data.shapes_analyzer import score
    from genimage.data.types import image_to_uint8
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    captions = sample_captions(args.n, seed=0, split=args.split, three_object_share=1.0)
    images = pipe(list(range(args.n)), prompts=captions)
    scores = [score(img, cap) for img, cap in zip(images, captions)]
    kinds = collections.defaultdict(list)
    for i, s in enumerate(scores):
        kind = failure_kind(s)
        if kind:
            kinds[kind].append(i)
    detected = collections.Counter(len(s.detected) for s in scores)
    print(f"{args.model}, {args.n} three-object prompts ({args.split} split): overall "
          f"{sum(s.overall for s in scores) / args.n:.3f}")
    print("detected objects: " + ", ".join(f"{k}: {detected[k]}" for k in sorted(detected)))
    print("| failure kind | n | share of prompts |\n|---|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {len(kinds[kind])} | {len(kinds[kind]) / args.n:.2f} |")

    rows = [kind for kind in KINDS if kinds[kind]]
    if not rows:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    side = images.shape[-1]
    grid = np.full((len(rows) * (side + 2), 8 * (side + 2), 3), 255, dtype=np.uint8)
    lines = []
    for r, kind in enumerate(rows):
        for c, i in enumerate(kinds[kind][:8]):
            y, x = r * (side + 2), c * (side + 2)
            grid[y:y + side, x:x + side] = image_to_uint8(images[i])
            lines.append(f"row {r} ({kind}), column {c}: {captions[i]}")
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(args.out / "failures.png")
    (args.out / "failures.txt").write_text("\n".join(lines) + "\n")
    print(f"grid: {args.out / 'failures.png'} (rows: {', '.join(rows)})")


if __name__ == "__main__":
    main()
