"""Spatial control accuracy on held-out shapes scenes, with and without control.

For each of N scenes of a ``builtin:shapes`` split (dataset seed 1: never seen in training,
which uses seed 0), the control map of ``--kind`` is made from the scene (edges: Canny of
the rendering; sketch: its jittered, gappy version; segmentation: exact masks) and the
scene's caption is the prompt. The bundled ``shapes`` model generates each image (seed i)
with the control model at each ``--scale`` (0 = no control: the base alone) and we report

* edge F1 (1 px tolerance) between the scene's Canny edges and the generated image's;
* mean per-object mask IoU against the scene's exact masks;
* prompt accuracy (count, colour-shape binding and relation all right,
  :func:`genimage.data.shapes_analyzer.score`).

Usage::

    python benchmarks/control_accuracy.py --control-model shapes-control --kind edges --n 200
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--control-model", default="shapes-control")
    ap.add_argument("--kind", default="edges")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--split", default="eval", help="eval (held-out colour-shape pairs) | train (seen pairs)")
    ap.add_argument("--scales", default="0,1")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--json", default=None, help="Also write the results here")
    args = ap.parse_args()

    from genimage.data.shapes import ShapesDataset
    from genimage.data.shapes_analyzer import score
    from genimage.editing.control import ControlSpec, hint_from_uint8
    from genimage.editing.control_maps import edge_mask, scene_control
    from genimage.metrics.control_accuracy import edge_f1, object_ious
    from genimage.models.control import load_control
    from genimage.pipeline import Pipeline
    from genimage.provenance.record import png_pixels

    pipe = Pipeline.from_pretrained(args.model)
    loaded = load_control(args.control_model, base_sha256=pipe.loaded.weights_sha256)
    ds = ShapesDataset(length=args.n, split=args.split, seed=1)
    items = [ds._item(i) for i in range(args.n)]
    hints = torch.stack([hint_from_uint8(scene_control(args.kind, sc, rgb, seed=i)) for i, (sc, rgb) in enumerate(items)])
    captions = [sc.caption for sc, _ in items]
    ref_edges = [edge_mask(rgb) for _, rgb in items]
    opts = pipe.options(bf16=False)
    results = {"model": args.model, "control_model": loaded.ref, "control_sha256": loaded.sha256, "kind": args.kind,
               "n": args.n, "split": args.split, "dataset_seed": 1, "rows": []}
    for scale in [float(s) for s in args.scales.split(",")]:
        t0 = time.perf_counter()
        images = []
        for start in range(0, args.n, args.batch_size):
            sl = slice(start, start + args.batch_size)
            pipe.control = None if scale == 0 else ControlSpec(loaded, hints[sl], args.kind, scale)
            images.append(pipe(list(range(start, start + len(captions[sl]))), prompts=captions[sl], options=opts,
                               batch_size=args.batch_size))
        images = torch.cat(images)
        dt = time.perf_counter() - t0
        f1s, ious, acc = [], [], []
        for img, (scene, _), ref, cap in zip(images, items, ref_edges, captions):
            rgb = png_pixels(img).numpy()
            f1s.append(edge_f1(edge_mask(rgb), ref)["f1"])
            ious += object_ious(rgb, scene)
            acc.append(score(rgb, cap).overall)
        row = {"scale": scale, "edge_f1": float(np.mean(f1s)), "mask_iou": float(np.mean(ious)),
               "prompt_accuracy": float(np.mean(acc)), "seconds": round(dt, 1)}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    print(f"| {args.kind} | {args.split} | {args.n} | " + " | ".join(
        f"scale {r['scale']:g}: F1 {r['edge_f1']:.3f}, IoU {r['mask_iou']:.3f}, acc {r['prompt_accuracy']:.3f}"
        for r in results["rows"]) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
