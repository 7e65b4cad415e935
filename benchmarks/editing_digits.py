"""Inpainting and img2img on the bundled digits model, on the held-out digits (eval split).

    python benchmarks/editing_digits.py [--threads 2] [--resample 4]

Inpainting: each eval digit loses a region (right half, bottom half or the centre 4x4) and
is completed with its own label by

* ``inpaint``: genimage's known-region inpainting (``EditSpec(image, 1.0, mask)``),
* ``inpaint, resample R``: the same with RePaint's resampling (``--resample``, R times the
  network evaluations), and
* ``paste``: a fresh sample of the same label and seed with the known pixels pasted over it
  (no harmonisation: the baseline inpainting must beat),

with the model's default sampling (16 Euler steps, guidance 2). Reported: accuracy of the
shipped digits classifier against the true label, Fréchet distance to the eval digits in the
digits features (297 vs 297 images: compare rows, not with other tables), and the seam: the
mean absolute difference between the two pixel rows / columns on either side of the mask's
edge, against the same statistic on the real digits.

img2img: each eval digit of class ``c`` is pushed toward label ``(c + 3) % 10`` at several
strengths; reported: the classifier's accuracy for the target label and the mean absolute
change from the input, in 8-bit levels.

Super-resolution: each eval digit is block-averaged to 4x4 (factor 2) or 2x2 (factor 4) and
brought back to 8x8 by nearest or bicubic upsampling, or by ``genimage edit --upscale``
(DDNM) without a label and with the true one. Reported: classifier accuracy, FD, PSNR against
the original 8x8 digit, and consistency: the largest and the mean difference between the
output's block means and the low-resolution input, in 8-bit levels (DDNM's are 0 before the
final clamp to [-1, 1]).
"""

from __future__ import annotations

import argparse

import torch

from genimage.data.builtin import load_builtin
import torch.nn.functional as F

from genimage.editing.known_region import block_repeat
from genimage.editing.spec import EditSpec
from genimage.metrics.features import load_feature_net
from genimage.metrics.frechet import frechet_distance
from genimage.metrics.recognizability import digits_recognizability
from genimage.pipeline import Pipeline


def masks() -> dict[str, torch.Tensor]:
    right, bottom, centre = (torch.zeros(1, 1, 8, 8) for _ in range(3))
    right[..., 4:] = 1
    bottom[..., 4:, :] = 1
    centre[..., 2:6, 2:6] = 1
    return {"right half": right, "bottom half": bottom, "centre 4x4": centre}


def seam(images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |difference| between horizontally / vertically adjacent pixels that straddle the
    mask's edge (one kept, one regenerated)."""
    m = mask[0, 0].bool()
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs()[..., m[:, 1:] != m[:, :-1]]
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs()[..., m[1:, :] != m[:-1, :]]
    return float(torch.cat([dx.flatten(), dy.flatten()]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resample", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_builtin("digits", split="eval")
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    labels = [int(data[i]["label"]) for i in range(len(data))]
    n = len(labels)
    pipe = Pipeline.from_pretrained("digits")
    opts = pipe.options(bf16=False)
    seeds = list(range(n))
    net = load_feature_net("digits")
    real = net.features(images)
    print(f"digits eval split: {n} images; model digits, {opts.sampler} {opts.steps} steps, guidance {opts.guidance}")
    print("\n| mask | method | classifier accuracy | FD vs eval digits | seam (real digits: same statistic) |")
    print("|---|---|---|---|---|")
    for name, mask in masks().items():
        fresh = pipe(seeds, labels=labels, options=opts, batch_size=n)
        rows = {
            "inpaint": pipe(seeds, labels=labels, options=opts, batch_size=n, edit=EditSpec(images, 1.0, mask)),
            f"inpaint, resample {args.resample}": pipe(seeds, labels=labels, options=opts, batch_size=n,
                                                       edit=EditSpec(images, 1.0, mask, resample=args.resample)),
            "paste": torch.where(mask.bool(), fresh, images),
        }
        for method, out in rows.items():
            acc = digits_recognizability(out, labels, net=net)["accuracy_vs_labels"]
            fd = frechet_distance(net.features(out).double(), real.double())
            print(f"| {name} | {method} | {acc:.3f} | {fd:.2f} | {seam(out, mask):.3f} ({seam(images, mask):.3f}) |",
                  flush=True)
    print("\n| img2img strength | steps run | accuracy for the target label (c + 3) % 10 | mean change from the input, 8-bit levels |")
    print("|---|---|---|---|")
    targets = [(c + 3) % 10 for c in labels]
    for strength in (0.25, 0.5, 0.75, 1.0):
        spec = EditSpec(images, strength)
        out = pipe(seeds, labels=targets, options=opts, batch_size=n, edit=spec)
        acc = digits_recognizability(out, targets, net=net)["accuracy_vs_labels"]
        change = float((out - images).abs().mean() * 127.5)
        print(f"| {strength} | {spec.steps_to_run(opts.steps)} | {acc:.3f} | {change:.1f} |", flush=True)

    print("\n| upscaling | method | classifier accuracy | FD vs eval digits | PSNR vs the original, dB | consistency: max / mean level diff |")
    print("|---|---|---|---|---|---|")
    for factor in (2, 4):
        low = F.avg_pool2d(images, factor)
        rows = {
            "nearest": block_repeat(low, factor),
            "bicubic": F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1),
            "genimage, no label": pipe(seeds, labels=None, options=opts, batch_size=n,
                                       edit=EditSpec.upscale(low, 8)),
            "genimage, true label": pipe(seeds, labels=labels, options=opts, batch_size=n,
                                         edit=EditSpec.upscale(low, 8)),
        }
        for method, out in rows.items():
            acc = digits_recognizability(out, labels, net=net)["accuracy_vs_labels"]
            fd = frechet_distance(net.features(out).double(), real.double())
            psnr = 10 * torch.log10(4.0 / ((out - images) ** 2).mean())
            gap = (F.avg_pool2d(out, factor) - low).abs() * 127.5
            print(f"| {8 // factor} -> 8 px | {method} | {acc:.3f} | {fd:.2f} | {float(psnr):.1f} | "
                  f"{float(gap.max()):.1f} / {float(gap.mean()):.2f} |", flush=True)


if __name__ == "__main__":
    main()
