"""Style transfer (genimage.editing.style) measured: content and style distances against both inputs.

For held-out pairs (content, style) — photo crops of the ``eval`` split and shapes scenes, 64 px —
each method's output ``o`` is scored with frozen feature maps (genimage.metrics.feature_maps, the
shipped ``shapes`` CNN at the images' own size):

* structure: the correlation of luminance edge maps (Sobel) with the content and with the style
  (colour-blind; the shapes CNN's maps are colour-sensitive, since it classifies colours);
* content distance ``D_c(o, x)`` (deepest maps, Gatys et al. 2016 Eq. 1) to the content ``x`` and to
  the style ``y`` (resized to the content's size);
* style distances to ``y`` and to ``x``: Gram matrices (Gatys Eq. 4, summed over stages) and the
  per-channel mean/std distance AdaIN matches.

A good transfer has a small ``D_c(o, x)``, a small style distance to ``y`` and a large one to ``x``.
Methods: AdaIN in pixels / latents / the decoder's stages (S = 1 and 0.5), plain img2img of the
content with the bundled shapes model (strength 0.5), and style-conditioned img2img (decoder AdaIN,
then img2img at strength 0.3). References: the content itself and the style image itself.

    python benchmarks/style_transfer.py --pairs 24 --grid benchmarks/style_transfer_grid.png
"""

from __future__ import annotations

import argparse
import io
import json
import time

import torch
import torch.nn.functional as F


def _png_bytes(image: torch.Tensor) -> bytes:
    from PIL import Image

    from genimage.provenance.record import png_pixels

    buf = io.BytesIO()
    Image.fromarray(png_pixels(image).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _img2img(pipe, image: torch.Tensor, strength: float, seed: int, steps: int) -> torch.Tensor:
    from genimage.editing.canvas import build_canvas_edit, run_canvas_edit

    canvas = build_canvas_edit(_png_bytes(image), pipe.config.image_size, pipe.config.channels, strength=strength)
    opts = pipe.options(steps=steps, bf16=False)
    prompts = [""] if pipe.conditioner.uses_text else None
    return run_canvas_edit(pipe, canvas, [seed], prompts=prompts, options=opts)[0]


def edge_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation ``(N,)`` of the Sobel gradient magnitudes of the luminance of ``a`` and
    ``b``: a colour-blind structure score (1 = the same edges)."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)

    def grad(x):
        lum = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).double()
        gx = F.conv2d(lum, kx.double(), padding=1)
        gy = F.conv2d(lum, kx.transpose(2, 3).double(), padding=1)
        g = (gx ** 2 + gy ** 2).sqrt().flatten(1)
        return g - g.mean(1, keepdim=True)

    ga, gb = grad(a), grad(b)
    return (ga * gb).sum(1) / (ga.norm(dim=1) * gb.norm(dim=1) + 1e-12)


def pairs(n: int, size: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``n`` (kind, content, style) pairs of ``(1, 3, size, size)`` images, three kinds in turn."""
    from genimage.data.builtin import load_builtin

    photos = load_builtin("photos", image_size=size, split="eval", seed=7, length=4 * n)
    shapes = load_builtin("shapes", image_size=32, split="eval", seed=7, length=2 * n)
    shape = lambda i: F.interpolate(shapes[i]["image"][None], size=(size, size), mode="nearest")  # noqa: E731
    photo = lambda i: photos[i]["image"][None]  # noqa: E731
    out = []
    for i in range(n):
        kind = ("photo<-photo", "photo<-shapes", "shapes<-photo")[i % 3]
        if kind == "photo<-photo":
            out.append((kind, photo(2 * i), photo(2 * i + 1)))
        elif kind == "photo<-shapes":
            out.append((kind, photo(2 * i), shape(i)))
        else:
            out.append((kind, shape(i), photo(2 * i + 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=16, help="img2img sampler steps (of which strength x steps run)")
    ap.add_argument("--grid", default=None, help="write a picture grid PNG (first 6 pairs)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--autoencoder", default=None, help="autoencoder of the latent/decoder methods (default: bundled shapes)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from genimage.editing.style import load_style_autoencoder, transfer_style
    from genimage.metrics.feature_maps import content_distance, gram_distance, mean_std_distance
    from genimage.pipeline import Pipeline

    ae = load_style_autoencoder(args.autoencoder).model
    pipe = Pipeline.from_pretrained("shapes")
    methods = {
        "content (reference)": lambda x, y, i: x,
        "style image (reference)": lambda x, y, i: F.interpolate(y, size=x.shape[-2:], mode="bicubic",
                                                                 antialias=True).clamp(-1, 1),
        "AdaIN pixels S=1": lambda x, y, i: transfer_style(x, y, ae, method="pixels"),
        "AdaIN latent S=1": lambda x, y, i: transfer_style(x, y, ae, method="latent"),
        "AdaIN decoder S=1": lambda x, y, i: transfer_style(x, y, ae, method="decoder"),
        "AdaIN decoder S=0.5": lambda x, y, i: transfer_style(x, y, ae, method="decoder", strength=0.5),
        "plain img2img 0.5": lambda x, y, i: _img2img(pipe, x[0], 0.5, i, args.steps)[None],
        "AdaIN decoder + img2img 0.3": lambda x, y, i: _img2img(
            pipe, transfer_style(x, y, ae, method="decoder")[0], 0.3, i, args.steps)[None],
    }
    data = pairs(args.pairs, args.size)
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    grid = []
    for i, (kind, x, y) in enumerate(data):
        y_at_x = F.interpolate(y, size=x.shape[-2:], mode="bicubic", antialias=True).clamp(-1, 1)
        shown = [x[0], y_at_x[0]]
        for name, fn in methods.items():
            t0 = time.perf_counter()
            o = fn(x, y, i).float()
            dt = time.perf_counter() - t0
            scores = {"edges_to_content": edge_correlation(o, x), "edges_to_style": edge_correlation(o, y_at_x),
                      "content_to_content": content_distance(o, x), "content_to_style": content_distance(o, y_at_x),
                      "gram_to_style": gram_distance(o, y), "gram_to_content": gram_distance(o, x),
                      "meanstd_to_style": mean_std_distance(o, y), "meanstd_to_content": mean_std_distance(o, x),
                      "seconds": torch.tensor([dt])}
            for k, v in scores.items():
                rows[name].setdefault(k, []).append(float(v[0]))
            if "reference" not in name:
                shown.append(o[0])
        if i < 6:
            grid.extend(shown)
    result = {name: {k: sum(v) / len(v) for k, v in cols.items()} for name, cols in rows.items()}
    print(f"{len(data)} pairs ({args.size} px; kinds photo<-photo, photo<-shapes, shapes<-photo in turn); "
          "means; feature maps of the shipped shapes CNN")
    print("| method | edge corr. with content | with style | D_c to content | D_c to style | Gram to style | "
          "Gram to content | mean/std to style | mean/std to content | s/image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['edges_to_content']:.3f} | {r['edges_to_style']:.3f} | {r['content_to_content']:.4f} | {r['content_to_style']:.4f} | {r['gram_to_style']:.4f} | "
              f"{r['gram_to_content']:.4f} | {r['meanstd_to_style']:.3f} | {r['meanstd_to_content']:.3f} | "
              f"{r['seconds']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.grid:
        from genimage.data.image_io import save_image_grid

        save_image_grid(torch.stack(grid), args.grid, nrow=2 + len([m for m in methods if "reference" not in m]))
        print(f"grid: {args.grid} (columns: content, style, " +
              ", ".join(m for m in methods if "reference" not in m) + ")")


if __name__ == "__main__":
    main()
