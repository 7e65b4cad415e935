"""Fine-tune only the decoder of a latent model's autoencoder, keeping its latent space.

The encoder is frozen, so every latent is unchanged and a diffusion model trained on them
stays valid; only how latents turn back into pixels improves. This is how Stability AI's
``sd-vae-ft-mse`` improved Stable Diffusion's decoder without retraining the UNet (decoder
fine-tuned, encoder kept). Here it targets the bundled shapes autoencoder, whose decoder turns
the 6-8 px squares of three-object scenes into circles (BENCHMARKS.md, "Three-object shapes").

Loss: L1 + MSE between the image and the decoded posterior mean (the latent the diffusion
model is trained on), on fresh ``builtin:shapes3`` renders (one/two/three-object scenes).

    # 1. fine-tune the decoder (writes OUT/autoencoder-like folder: config.json + model.safetensors)
    OMP_NUM_THREADS=1 python scripts/finetune_decoder.py train --autoencoder src/genimage/weights/shapes/autoencoder \\
        --out runs/ae_s3_dec --minutes 20
    # 2. give a latent model (trained on the old autoencoder) the new decoder
    python scripts/finetune_decoder.py swap --model runs/shapes3/checkpoints/step-XXXX \\
        --autoencoder runs/ae_s3_dec --out runs/shapes3_dec
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from genimage.errors import GenimageError


def _batches(batch: int, seed: int, three_object_share: float):
    """Endless batches of shapes3 renders in [-1, 1] (train split: held-out pairs stay unseen)."""
    from genimage.data.shapes import ShapesDataset
    from genimage.data.types import image_from_uint8

    ds = ShapesDataset(length=10**9, image_size=32, split="train", seed=seed, three_object_share=three_object_share)
    i = 0
    while True:
        yield torch.stack([image_from_uint8(ds.render(j)) for j in range(i, i + batch)])
        i += batch


def train(autoencoder: Path, out: Path, minutes: float, lr: float, batch: int, seed: int,
          three_object_share: float) -> None:
    from genimage.latent.autoencoder import load_autoencoder
    from genimage.models.io import save_model

    ae = load_autoencoder(autoencoder)
    model = ae.model
    encoder, decoder = model.ae.encoder, model.ae.decoder
    encoder.requires_grad_(False)
    decoder.train().requires_grad_(True)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    data = _batches(batch, seed, three_object_share)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < minutes * 60:
        x = next(data)
        with torch.no_grad():
            z = model.encode(x)  # scaled posterior mean: what the diffusion model sees
        y = decoder(z / model.ae.scale_factor)
        loss = (y - x).abs().mean() + (y - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "s": round(time.perf_counter() - t0, 1)}),
                  flush=True)
    decoder.eval()
    state = {k: v.detach().clone() for k, v in model.ae.state_dict().items()}
    cfg = ae.config
    note = {"decoder_finetuned_from": ae.sha256, "decoder_steps": step, "decoder_batch": batch, "decoder_lr": lr,
            "decoder_data": f"builtin:shapes3 train split, three_object_share {three_object_share}",
            "decoder_wall_s": round(time.perf_counter() - t0, 1)}
    cfg = dataclasses.replace(cfg, training={**cfg.training, **note})
    save_model(out, cfg, state)
    print(f"fine-tuned the decoder for {step} steps; wrote {out}")


def swap(model: Path, autoencoder: Path, out: Path) -> None:
    """Copy latent model ``model`` to ``out`` with ``autoencoder`` as its autoencoder, after
    checking that the new autoencoder's encoder is the old one's (same latent space)."""
    from genimage.latent.autoencoder import SHA_KEY, copy_autoencoder, load_autoencoder, load_latent_autoencoder
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder

    folder = resolve_model_folder(model)
    config = ModelConfig.load(folder)
    old = load_latent_autoencoder(config)
    new = load_autoencoder(autoencoder, image_size=config.image_size)
    a, b = old.model.ae.encoder.state_dict(), new.model.ae.encoder.state_dict()
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and torch.equal(
        old.model.ae.scale_factor, new.model.ae.scale_factor)
    if not same:
        raise GenimageError(f"{autoencoder}'s encoder is not {folder}'s: its latents differ, so the model would "
                            "not fit it; only a decoder fine-tuned from this model's autoencoder can be swapped in")
    if out.exists():
        raise GenimageError(f"{out} exists; choose a new --out")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns("autoencoder"))
    copy_autoencoder(new, tmp / "autoencoder")
    raw = json.loads((tmp / "config.json").read_text())
    raw["autoencoder"] = "autoencoder"
    raw["training"] = {**raw.get("training", {}), SHA_KEY: new.sha256, "decoder_swapped_from": old.sha256}
    (tmp / "config.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    tmp.rename(out)
    print(f"wrote {out} (autoencoder {new.sha256[:12]}..., encoder and latents unchanged)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune the decoder")
    t.add_argument("--autoencoder", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=20.0)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=7, help="render seed (not the diffusion model's data seed)")
    t.add_argument("--three-object-share", type=float, default=0.5)
    s = sub.add_parser("swap", help="give a latent model the fine-tuned decoder")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--autoencoder", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            train(args.autoencoder, args.out, args.minutes, args.lr, args.batch, args.seed, args.three_object_share)
        else:
            swap(args.model, args.autoencoder, args.out)
    except GenimageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
