"""Seams of outpainting beyond the canvas: overlapping windows (MultiDiffusion) vs windows
side by side.

    python benchmarks/outpaint_seams.py [--n 32] [--threads 1] [--grid benchmarks/outpaint_seams.png]

Each input (a held-out shapes scene, 32 px; a scikit-image photo resized to 32 px, both
through the bundled latent ``shapes`` model; a held-out 8 px digit through the bundled pixel
``digits`` model) is extended to the left by twice its width (``--extend 2S,0,0,0``: a 3S x S
canvas, 96x32 or 24x8), painted by S x S windows with the library's canvas edit
(``EditSpec(..., window_overlap=o)``, exactly what ``genimage edit --extend`` runs at the
model's scale), seed = the input's index, the model's default sampling. Shapes scenes get the
caption of the next scene as prompt, photos the empty prompt, digits no label.

Seam statistic: ``d_c`` = mean |x[..., c] - x[..., c-1]| over rows and channels (8-bit
levels), the jump between adjacent pixel columns; on the painted part of the canvas, the
**seam excess** is the mean ``d_c`` over the columns where a window starts or ends minus the
mean over all other columns (0 = a window border looks like any other column; a visible seam
> 0). ``input-edge excess``: the same at the border between the painted part and the kept input. Window borders are
those of the run's own layout (``tile_starts``, as ``WindowedDenoiser.layout``, in pixels). Reference:
the same excess on the real S x S inputs at columns S/4, S/2, 3S/4 (real content has no
window borders, so it shows the spread of the statistic itself).

Last table: the alternative, sequential inpainting (:func:`sequential`), on the shapes
scenes: window by window from the input outwards, each window keeping ``overlap`` columns
already painted; its borders are each window's edges.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from genimage.data.builtin import load_builtin
from genimage.editing.plan import model_factor
from genimage.editing.spec import EditSpec
from genimage.editing.canvas import tile_starts
from genimage.pipeline import Pipeline


def column_jumps(x: torch.Tensor) -> torch.Tensor:
    """``(N, W - 1)``: mean |x[..., c] - x[..., c-1]| over channels and rows, for c = 1..W-1."""
    return (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2))


def borders(width: int, window: int, overlap: int, factor: int) -> list[int]:
    """Pixel columns ``c`` (a jump between c-1 and c) where a window starts or ends."""
    xs = tile_starts(width // factor, window // factor, overlap // factor)  # the layout WindowedDenoiser uses
    cols = {x * factor for x in xs} | {(x + window // factor) * factor for x in xs}
    return sorted(c for c in cols if 0 < c < width)


def seam_excess(images: torch.Tensor, cols: list[int], painted: int) -> tuple[float, float]:
    """``(excess, inside)`` in 8-bit levels: the mean jump ``d_c`` over the ``cols`` minus the
    mean over the other columns 1..painted-1 (0 = no seam), and that other mean."""
    d = column_jumps(images)[:, :painted - 1] * 127.5  # jump c is index c - 1
    sel = torch.zeros(painted - 1, dtype=torch.bool)
    for c in cols:
        if 0 < c < painted:
            sel[c - 1] = True
    inside = float(d[:, ~sel].mean())
    return float(d[:, sel].mean()) - inside, inside


def edge_excess(images: torch.Tensor, painted: int) -> float:
    """The jump across the border of the painted part and the kept input, minus the mean
    jump inside the painted part, in 8-bit levels."""
    d = column_jumps(images) * 127.5
    return float(d[:, painted - 1].mean() - d[:, :painted - 1].mean())


def outpaint(pipe: Pipeline, inputs: torch.Tensor, overlap: int, prompts, labels) -> tuple[torch.Tensor, float]:
    s = pipe.config.image_size
    n, c = inputs.shape[:2]
    canvas = torch.zeros(n, c, s, 3 * s)
    canvas[..., 2 * s:] = inputs
    mask = torch.ones(n, 1, s, 3 * s)
    mask[..., 2 * s:] = 0
    t0 = time.perf_counter()
    out = pipe(list(range(n)), prompts=prompts, labels=labels,
               edit=EditSpec(canvas, 1.0, mask, window_overlap=overlap), batch_size=16)
    return out, time.perf_counter() - t0


def sequential(pipe: Pipeline, inputs: torch.Tensor, overlap: int, prompts) -> tuple[torch.Tensor, float, list[int]]:
    """The alternative to MultiDiffusion: inpainting window by window, right to left, each
    model-size window keeping the ``overlap`` columns already painted (or the input) and
    painting the rest; window k of image i uses seed ``tile_seed(i, k)``. Returns the
    canvases, the seconds and the window start columns."""
    from genimage.editing.canvas import tile_seed

    s = pipe.config.image_size
    n, c = inputs.shape[:2]
    canvas = torch.zeros(n, c, s, 3 * s)
    canvas[..., 2 * s:] = inputs
    done = 2 * s  # columns >= done are fixed
    starts = []
    t0 = time.perf_counter()
    k = 0
    while done > 0:
        x = max(0, done - (s - overlap))
        starts.append(x)
        mask = torch.zeros(1, 1, s, s)
        mask[..., :done - x] = 1
        out = pipe([tile_seed(i, k) for i in range(n)], prompts=prompts,
                   edit=EditSpec(canvas[..., x:x + s].clone(), 1.0, mask), batch_size=16)
        canvas[..., x:x + s] = out
        done, k = x, k + 1
    return canvas, time.perf_counter() - t0, starts


def photos(n: int, size: int) -> torch.Tensor:
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
    out = []
    for name in names[:n]:
        arr = torch.from_numpy(getattr(data, name)()).float().permute(2, 0, 1)[None] / 127.5 - 1
        h, w = arr.shape[-2:]
        side = min(h, w)
        arr = arr[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        out.append(F.interpolate(arr, size=(size, size), mode="bicubic", antialias=True, align_corners=False))
    return torch.cat(out).clamp(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="shapes scenes and digits per setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", default="benchmarks/outpaint_seams.png", help="picture grid (PNG)")
    ap.add_argument("--sequential-only", action="store_true", help="only the sequential-inpainting rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    shapes = Pipeline.from_pretrained("shapes")
    digits = Pipeline.from_pretrained("digits")
    scenes = load_builtin("shapes", split="eval", length=args.n + 1)
    scene_imgs = torch.stack([scenes[i]["image"] for i in range(args.n)])
    captions = [scenes[i + 1]["caption"] for i in range(args.n)]
    ds = load_builtin("digits", split="eval")
    digit_imgs = torch.stack([ds[i]["image"] for i in range(args.n)])
    photo_imgs = photos(6, 32)
    cases = [("shapes scenes", shapes, scene_imgs, captions, None),
             ("photos (shapes model)", shapes, photo_imgs, [""] * len(photo_imgs), None),
             ("digits", digits, digit_imgs, None, None)]
    rows, grid = [], {}
    print("| inputs | model | overlap (px) | windows | seam excess at window borders | mean jump elsewhere "
          "| input-edge excess | s / image |")
    print("|---|---|---|---|---|---|---|---|")
    for name, pipe, imgs, prompts, labels in cases if not args.sequential_only else []:
        s = pipe.config.image_size
        f = model_factor(pipe.config)
        painted = 2 * s
        ref, ref_in = seam_excess(imgs, [s // 4, s // 2, 3 * s // 4], s)
        print(f"| {name} | real inputs (reference) | - | - | {ref:+.2f} | {ref_in:.2f} | - | - |")
        for overlap in sorted({0, s // 4, s // 2, 3 * s // 4}):
            out, dt = outpaint(pipe, imgs, overlap, prompts, labels)
            cols = borders(3 * s, s, overlap, f)
            k = len(tile_starts(3 * s // f, s // f, overlap // f))
            (ex, inside), e = seam_excess(out, cols, painted), edge_excess(out, painted)
            rows.append((name, overlap, ex, e))
            print(f"| {name} | {'shapes' if pipe is shapes else 'digits'} | {overlap} | {k} | {ex:+.2f} | {inside:.2f} "
                  f"| {e:+.2f} | {dt / len(imgs):.2f} |", flush=True)
            if pipe is shapes:
                grid.setdefault(overlap, []).append(out[:4] if name == "shapes scenes" else out[:2])
    print()
    print("| inputs | method | kept overlap (px) | windows | seam excess at window borders | mean jump elsewhere "
          "| input-edge excess | s / image |")
    print("|---|---|---|---|---|---|---|---|")
    s = shapes.config.image_size
    for overlap in (8, 16, 24):
        out, dt, starts = sequential(shapes, scene_imgs, overlap, captions)
        cols = sorted(c for c in {x + s for x in starts} | set(starts) if 0 < c < 2 * s)
        (ex, inside), e = seam_excess(out, cols, 2 * s), edge_excess(out, 2 * s)
        print(f"| shapes scenes | sequential inpainting | {overlap} | {len(starts)} | {ex:+.2f} | {inside:.2f} | {e:+.2f} "
              f"| {dt / len(scene_imgs):.2f} |", flush=True)
    if args.grid and grid:
        from genimage.data.image_io import save_image_grid

        save_image_grid(torch.cat([torch.cat(v) for _, v in sorted(grid.items())]), args.grid, nrow=6)
        print(f"grid: {args.grid} (rows: overlap 0, 8, 16, 24 px; 4 shapes scenes then 2 photos each)")


if __name__ == "__main__":
    main()
