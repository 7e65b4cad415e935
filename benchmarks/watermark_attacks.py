"""Attack table for genimage's invisible marks: TPR at 1% FPR and bit accuracy under common edits.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/watermark_attacks.py [-n 500] [--threads 1]
        [--cache /tmp/genimage_watermark_attacks] [--attacks "JPEG 90,regenerate 0.3"] [--json out.json]

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

Regeneration (``regenerate 0.3`` / ``0.6``): genimage's own img2img with the bundled shapes
model (``Pipeline.__call__(..., edit=EditSpec(image, strength))``, default sampling, the
image's caption as the prompt, seed = image index + a per-set offset). At 32 px the image goes
through the model as it is; a 256 px image is first reduced to 32 px (area), regenerated, and
enlarged back (bicubic), since the model makes only 32 px images.

Speed (issue 18 item 4, n >= 500): the samples, their marked copies and the real images are
cached in ``--cache`` (one ``.npz`` per ``n``); each attack runs once per set; the pattern
detector scores batches (its high-pass is a separable box sum and the key's pattern is
cached), and the regenerations run batched through the pipeline.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from genimage.data.builtin import load_builtin
from genimage.data.types import image_from_uint8, image_to_uint8
from genimage.editing.spec import EditSpec
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


REGENERATE = {"regenerate 0.3 (img2img)": 0.3, "regenerate 0.6 (img2img)": 0.6}


def regenerate(pipe, arrs: list[np.ndarray], prompts: list[str], strength: float, seed0: int) -> list[np.ndarray]:
    """``arrs`` after img2img at ``strength`` with the shapes model (module docstring)."""
    size = pipe.config.image_size
    h = arrs[0].shape[0]
    x = torch.stack([image_from_uint8(a) for a in arrs])
    if h != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    seeds = list(range(seed0, seed0 + len(arrs)))
    out = pipe(seeds, prompts=prompts, edit=EditSpec(x, strength), batch_size=100)
    res = [image_to_uint8(y) for y in out]
    if h != size:
        res = [np.asarray(Image.fromarray(a).resize((h, h), Image.Resampling.BICUBIC)) for a in res]
    return res


def selected_attacks(ap: argparse.ArgumentParser, text: str | None) -> list[str]:
    """The attacks a comma-separated ``--attacks`` names (default: all, regeneration included)."""
    known = list(ATTACKS) + list(REGENERATE)
    if not text:
        return known
    names = [a.strip() for a in text.split(",")]
    unknown = [a for a in names if a not in known]
    if unknown:
        ap.error(f"unknown attacks {unknown}; known: {known}")
    return names


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> float:
    thr = np.quantile(neg, 1 - fpr)
    return float(np.mean(pos > thr))


def pattern_scores(arrs: list[np.ndarray], batch: int = 100) -> np.ndarray:
    out = []
    for i in range(0, len(arrs), batch):
        x = torch.from_numpy(np.stack(arrs[i:i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(wm.detection_scores(x).numpy())
    return np.concatenate(out)


def dwtdct_scores(arrs: list[np.ndarray], message: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = [dwtdct.score(a, message) for a in arrs]
    return (np.array([o["z"] for o in out]), np.array([o["bit_accuracy"] for o in out]),
            np.array([o["decoded"] == message.hex() for o in out]))


def image_sets(pipe, n: int, key: str, cache: Path) -> dict:
    """The six image sets (uint8 arrays) and the captions, from ``cache`` when there."""
    from genimage.data.shapes import sample_captions

    path = cache / f"sets_{n}_{wm.key_id(key)}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: list(z[k]) if k.endswith(("32", "256")) else [str(c) for c in z[k]] for k in z.files}
    captions = sample_captions(n, seed=0, split="train")
    gen = pipe(list(range(n)), prompts=captions, batch_size=100)
    gen32 = [image_to_uint8(x) for x in gen]
    mark32 = [image_to_uint8(wm.embed(image_from_uint8(a), key)) for a in gen32]
    shapes = load_builtin("shapes", split="eval", length=n)
    real32 = [image_to_uint8(shapes[i]["image"]) for i in range(n)]
    up = [np.asarray(Image.fromarray(a).resize((256, 256), Image.Resampling.BICUBIC)) for a in gen32]
    entry = wm.record_entry(3, 256, 256)
    mark256 = [image_to_uint8(wm.apply_entry(image_from_uint8(a), entry)) for a in up]
    photos = load_builtin("photos", image_size=256, split="all", length=n)
    real256 = [image_to_uint8(photos[i]["image"]) for i in range(n)]
    sets = {"gen32": gen32, "mark32": mark32, "real32": real32, "up256": up, "mark256": mark256,
            "real256": real256, "captions": captions, "real_captions": [shapes[i]["caption"] for i in range(n)]}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.stack(v) if k.endswith(("32", "256")) else np.array(v) for k, v in sets.items()})
    tmp.replace(path)
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/genimage_watermark_attacks"))
    ap.add_argument("--n256", type=int, help="images per set for the 256 px columns (default -n; 0 skips them)")
    ap.add_argument("--attacks", help="comma-separated attack names (default: all)")
    ap.add_argument("--json", type=Path, help="write the table's numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    n = args.n
    key = wm.watermark_key()
    message = dwtdct.default_message(key)
    pipe = Pipeline.from_pretrained("shapes")
    s = image_sets(pipe, n, key, args.cache)
    n256 = n if args.n256 is None else min(args.n256, n)
    for k in ("mark256", "up256", "real256"):
        s[k] = s[k][:n256]
    t1 = time.time()
    psnr = lambda a, b: 10 * np.log10(255**2 / np.mean([np.mean((x.astype(float) - y) ** 2) for x, y in zip(a, b)]))  # noqa: E731
    print(f"n = {n} per set at 32 px, {n256} at 256 px (positives: generated + marked; negatives: as many generated "
          f"unmarked + as many real); public default key; setup {t1 - t0:.0f}s")
    print(f"PSNR of the marks: pattern @32 {psnr(s['mark32'], s['gen32']):.1f} dB" + (
          f"; pattern + DWT-DCT @256 {psnr(s['mark256'], s['up256']):.1f} dB" if n256 else ""))
    print("\n| attack | pattern @32 TPR@1%FPR | pattern @256 TPR@1%FPR | DWT-DCT @256 TPR@1%FPR | "
          "DWT-DCT bit accuracy | DWT-DCT exact message |")
    print("|---|---|---|---|---|---|")
    names = selected_attacks(ap, args.attacks)
    rows, sums = {}, np.zeros(3)
    sets = [("mark32", "captions"), ("gen32", "captions"), ("real32", "real_captions"),
            ("mark256", "captions"), ("up256", "captions"), ("real256", "real_captions")]
    for name in names:
        ta = time.time()
        out = {}
        for tag, (k, cap) in enumerate(sets):
            if not s[k]:
                out[k] = []
            elif name in REGENERATE:
                out[k] = regenerate(pipe, s[k], s[cap][:len(s[k])], REGENERATE[name], 10_000 * (tag + 1))
            else:
                out[k] = [np.asarray(ATTACKS[name](Image.fromarray(a), 1000 * tag + i).convert("RGB"))
                          for i, a in enumerate(s[k])]
        p32 = pattern_scores(out["mark32"])
        n32 = np.concatenate([pattern_scores(out["gen32"]), pattern_scores(out["real32"])])
        if n256:
            p256, q256 = pattern_scores(out["mark256"]), pattern_scores(out["up256"] + out["real256"])
            dz, bits, exact = dwtdct_scores(out["mark256"], message)
            dzn = dwtdct_scores(out["up256"] + out["real256"], message)[0]
            row = [tpr_at_fpr(p32, n32), tpr_at_fpr(p256, q256), tpr_at_fpr(dz, dzn)]
        else:
            bits = exact = np.array([np.nan])
            row = [tpr_at_fpr(p32, n32), np.nan, np.nan]
        rows[name] = row + [float(bits.mean()), float(exact.mean()), time.time() - ta]
        if name != "none":
            sums += row
        print(f"| {name} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {bits.mean():.3f} | {exact.mean():.3f} |",
              flush=True)
    k = len([a for a in names if a != "none"])
    if k:
        print(f"| **mean over the {k} attacks** | {sums[0] / k:.3f} | {sums[1] / k:.3f} | {sums[2] / k:.3f} | | |")
    print(f"\ntotal {time.time() - t0:.0f}s (setup {t1 - t0:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
