"""Attack table for genimage's invisible marks: TPR at 1% FPR and bit accuracy under common edits.

    nice -n 10 python benchmarks/watermark_attacks.py [-n 500] [--threads 2]

Marks and image sets:

- ``pattern @32``: the keyed +-1 pattern (2 levels) at the bundled shapes model's native 32x32.
  Positives: ``n`` shapes samples (seeds 0..n-1, shapes captions), marked. Negatives: the same
  samples unmarked, and ``n`` real shapes images (eval split).
- ``pattern @256`` and ``DWT-DCT @256``: the same samples upscaled to 256x256 (bicubic), carrying
  both marks as genimage applies them to large RGB images (pattern, then the DWT-DCT message of
  the key). Negatives: the upscaled unmarked samples, and ``n`` real 256x256 crops of the photos
  bundled with scikit-image (``load_builtin("photos", image_size=256, split="all")``: random
  crops at random scales of 7 photos, so the real set is correlated).

Every attack is applied to positives and negatives alike. The detector's threshold is the 99th
percentile of the attacked negatives' scores (2n of them), and the TPR is the fraction of
attacked positives scoring above it. The score is the pattern's correlation ``z``, or the
DWT-DCT block-agreement ``z`` with the known message. For DWT-DCT the table also gives the bit
accuracy of the decoded 32-bit message, and the fraction decoded exactly. Geometric attacks are
undone only by resizing back to the original size: crops are centre crops resized back, and
rotations keep the size (black corners). No search for the rotation angle or the crop offset
is made.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from genimage.data.builtin import load_builtin
from genimage.data.types import image_from_uint8, image_to_uint8
from genimage.pipeline import Pipeline
from genimage.provenance import dwtdct
from genimage.provenance import watermark as wm


def _jpeg(im: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _resize(im: Image.Image, f: float) -> Image.Image:
    w, h = im.size
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)


def _crop(im: Image.Image, frac: float) -> Image.Image:
    """Remove ``frac`` of the area (centre crop), resize back."""
    w, h = im.size
    keep = (1 - frac) ** 0.5
    cw, ch = round(w * keep), round(h * keep)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)


def _noise(im: Image.Image, std: float, seed: int) -> Image.Image:
    a = np.asarray(im).astype(np.float64)
    a = a + np.random.default_rng(seed).normal(0, std, a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


ATTACKS = {
    "none": lambda im, s: im,
    "JPEG 90": lambda im, s: _jpeg(im, 90),
    "JPEG 70": lambda im, s: _jpeg(im, 70),
    "JPEG 50": lambda im, s: _jpeg(im, 50),
    "resize 0.5x (and back)": lambda im, s: _resize(im, 0.5),
    "resize 2x (and back)": lambda im, s: _resize(im, 2.0),
    "crop 10% (resized back)": lambda im, s: _crop(im, 0.10),
    "crop 30% (resized back)": lambda im, s: _crop(im, 0.30),
    "crop 50% (resized back)": lambda im, s: _crop(im, 0.50),
    "rotate 5 deg": lambda im, s: im.rotate(5, Image.Resampling.BICUBIC),
    "rotate 15 deg": lambda im, s: im.rotate(15, Image.Resampling.BICUBIC),
    "rotate 30 deg": lambda im, s: im.rotate(30, Image.Resampling.BICUBIC),
    "Gaussian noise std 5": lambda im, s: _noise(im, 5, s),
    "Gaussian noise std 25": lambda im, s: _noise(im, 25, s),
    "Gaussian blur r=1": lambda im, s: im.filter(ImageFilter.GaussianBlur(1)),
    "Gaussian blur r=2": lambda im, s: im.filter(ImageFilter.GaussianBlur(2)),
    "brightness x1.3": lambda im, s: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast x1.3": lambda im, s: ImageEnhance.Contrast(im).enhance(1.3),
    "brightness x0.7": lambda im, s: ImageEnhance.Brightness(im).enhance(0.7),
}


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> float:
    thr = np.quantile(neg, 1 - fpr)
    return float(np.mean(pos > thr))


def pattern_scores(arrs: list[np.ndarray]) -> np.ndarray:
    x = torch.stack([image_from_uint8(a) for a in arrs])
    return np.concatenate([wm.detection_scores(x[i:i + 100]).numpy() for i in range(0, len(x), 100)])


def dwtdct_scores(arrs: list[np.ndarray], message: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = [dwtdct.score(a, message) for a in arrs]
    return (np.array([o["z"] for o in out]), np.array([o["bit_accuracy"] for o in out]),
            np.array([o["decoded"] == message.hex() for o in out]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from genimage.data.shapes import sample_captions

    t0 = time.time()
    n = args.n
    key = wm.watermark_key()
    message = dwtdct.default_message(key)
    pipe = Pipeline.from_pretrained("shapes")
    gen = pipe(list(range(n)), prompts=sample_captions(n, seed=0, split="train"), batch_size=100)
    gen32 = [image_to_uint8(x) for x in gen]
    mark32 = [image_to_uint8(wm.embed(image_from_uint8(a), key)) for a in gen32]
    shapes = load_builtin("shapes", split="eval", length=n)
    real32 = [image_to_uint8(shapes[i]["image"]) for i in range(n)]
    up = [np.asarray(Image.fromarray(a).resize((256, 256), Image.Resampling.BICUBIC)) for a in gen32]
    entry = wm.record_entry(3, 256, 256)
    mark256 = [image_to_uint8(wm.apply_entry(image_from_uint8(a), entry)) for a in up]
    photos = load_builtin("photos", image_size=256, split="all", length=n)
    real256 = [image_to_uint8(photos[i]["image"]) for i in range(n)]
    t1 = time.time()
    psnr = lambda a, b: 10 * np.log10(255**2 / np.mean([np.mean((x.astype(float) - y) ** 2) for x, y in zip(a, b)]))  # noqa: E731
    print(f"n = {n} per set (positives: generated + marked; negatives: {n} generated unmarked + {n} real); "
          f"public default key; setup {t1 - t0:.0f}s")
    print(f"PSNR of the marks: pattern @32 {psnr(mark32, gen32):.1f} dB; pattern + DWT-DCT @256 {psnr(mark256, up):.1f} dB")
    print("\n| attack | pattern @32 TPR@1%FPR | pattern @256 TPR@1%FPR | DWT-DCT @256 TPR@1%FPR | "
          "DWT-DCT bit accuracy | DWT-DCT exact message |")
    print("|---|---|---|---|---|---|")
    sums = np.zeros(3)
    for name, attack in ATTACKS.items():
        def run(arrs, tag):
            return [np.asarray(attack(Image.fromarray(a), 1000 * tag + i).convert("RGB")) for i, a in enumerate(arrs)]

        p32 = pattern_scores(run(mark32, 0))
        n32 = np.concatenate([pattern_scores(run(gen32, 1)), pattern_scores(run(real32, 2))])
        pos, neg = run(mark256, 3), run(up, 4) + run(real256, 5)
        p256, n256 = pattern_scores(pos), pattern_scores(neg)
        dz, bits, exact = dwtdct_scores(pos, message)
        dzn = dwtdct_scores(neg, message)[0]
        row = [tpr_at_fpr(p32, n32), tpr_at_fpr(p256, n256), tpr_at_fpr(dz, dzn)]
        if name != "none":
            sums += row
        print(f"| {name} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {bits.mean():.3f} | {exact.mean():.3f} |", flush=True)
    k = len(ATTACKS) - 1
    print(f"| **mean over the {k} attacks** | {sums[0] / k:.3f} | {sums[1] / k:.3f} | {sums[2] / k:.3f} | | |")
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
