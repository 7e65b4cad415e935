"""Can a noise-space mark (Gaussian Shading) be read back from the bundled shapes model's images?

    nice -n 10 python benchmarks/noise_watermark.py [-n 32] [--steps 8 32] [--decoder-steps 100]

The shapes model is a latent flow-matching model (4x8x8 latents, 256 noise elements). For
``n`` seeds, generated with Gaussian-Shading noise (the key's message) and without, this
measures how well inverting the Euler ODE (empty prompt, no guidance) recovers the noise signs:

- from the exact latents the sampler produced (no decoding; an upper bound);
- from the saved 8-bit image through the encoder (posterior mean);
- from the image through the encoder, then decoder inversion by Adam (``--decoder-steps``).

Reported per route: mean sign agreement with the mark's bits, the median ``z`` of marked and
unmarked images, and the fraction called marked at p < 0.001 (``z > 3.09``). Real shapes images
through the same route are the second negative set.
"""

from __future__ import annotations

import argparse
import time

import torch

from genimage.data.builtin import load_builtin
from genimage.data.shapes import sample_captions
from genimage.generation import generate
from genimage.latent.autoencoder import attached_autoencoder
from genimage.pipeline import Pipeline
from genimage.provenance import dwtdct
from genimage.provenance import noise_mark as N
from genimage.provenance import watermark as wm
from genimage.samplers.timesteps import make_schedule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--decoder-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = Pipeline.from_pretrained("shapes")
    d = pipe.loaded.denoiser
    ae = attached_autoencoder(d).model
    key = wm.watermark_key()
    msg = dwtdct.default_message(key)
    entry = {"method": N.METHOD, "key_id": wm.key_id(key), "message": msg.hex()}
    n = args.n
    prompts = sample_captions(n, seed=0, split="train")
    real = torch.stack([load_builtin("shapes", split="eval", length=n)[i]["image"] for i in range(n)])
    cond = pipe.conditioner(captions=[""] * n, batch=n)
    q = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # noqa: E731 - the saved 8-bit pixels
    print(f"shapes, n = {n} per set, latents 4x8x8 (256 elements), public default key, message {msg.hex()}")
    print("\n| sampler steps | route | agreement marked / unmarked / real | median z marked / unmarked / real | "
          "called marked (z > 3.09) marked / unmarked / real |")
    print("|---|---|---|---|---|")
    for steps in args.steps:
        o = pipe.options(steps=steps, bf16=False)
        ts = make_schedule(o.schedule, d.path, steps)
        lat = {}
        for name, mark in (("marked", entry), ("unmarked", None)):
            cap = []
            generate(d, pipe.config, pipe.conditioner, seeds=list(range(n)), prompts=prompts, options=o, noise_mark=mark,
                     callback=lambda info: cap.append(info["x"]) if info["t"] == float(ts[-2]) else None)
            lat[name] = cap[-1].float()  # the latents of the last step (t = 0)
        images = {k: q(ae.decode(v)) for k, v in lat.items()}
        images["real"] = real
        routes = {"exact latents (no decoding)": lambda k: lat[k] if k != "real" else ae.encode(real, sample=False),
                  "image -> encoder": lambda k: ae.encode(images[k], sample=False),
                  f"image -> encoder -> {args.decoder_steps} Adam steps": lambda k: N.invert_decoder(
                      ae, images[k], ae.encode(images[k], sample=False), args.decoder_steps)}
        for route, get in routes.items():
            res = {k: N.score_noise(N.invert(d, get(k), ts, cond), key, msg) for k in ("marked", "unmarked", "real")}
            cells = []
            for stat in ("agreement", "z", "hit"):
                vals = []
                for k in ("marked", "unmarked", "real"):
                    r = res[k]
                    if stat == "agreement":
                        vals.append(f"{float(r['agreement'].mean()):.3f}")
                    elif stat == "z":
                        vals.append(f"{float(r['z'].median()):.1f}")
                    else:
                        vals.append(f"{float((r['z'] > N.DETECTION_Z).float().mean()):.2f}")
                cells.append(" / ".join(vals))
            print(f"| {steps} | {route} | " + " | ".join(cells) + " |", flush=True)
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
