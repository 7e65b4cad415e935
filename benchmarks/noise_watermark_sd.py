"""The noise-space mark at 512 px through the Stable-Diffusion import (issue 18 item 4, the
"largest model genimage can run" column): a random-weight model in SD's real format.

    OMP_NUM_THREADS=2 python benchmarks/noise_watermark_sd.py --folder /tmp/sd512-random [-n 32]
        [--patterns 65536] [--steps 10] [--decoder-steps 300] [--decoder-lr 0.5]
        [--attacks "none,JPEG 90"] [--json out.json]

The folder is written once (``save_pretrained``, safetensors): a diffusers
``StableDiffusionPipeline`` with random weights, SD's layout at 512 px (``AutoencoderKL`` with
four levels, 8x down-sampling: latents 4x64x64 = 16,384 noise elements, as SD 1.x; a small
``UNet2DConditionModel`` (32, 64 channels, cross-attention) and a 2-layer CLIP text encoder, so
that it runs on this CPU), and genimage imports it through its SD path
(``Pipeline.from_pretrained``). ``n`` seeds generate with the empty prompt (DDIM, ``--steps``),
unmarked and marked (Gaussian Shading over ``--patterns`` keyed sign patterns); ``n`` crops of the
built-in photos (192 px, about the largest their eval split has, resized to 512) are the real
negatives. Each attack of ``benchmarks/watermark_attacks.py`` is applied in pixel space to all
three sets; the detector encodes (posterior mean), refines the latents by ``--decoder-steps`` Adam
steps so the decoder reproduces the image (:func:`genimage.provenance.noise_mark.invert_decoder`:
a random VAE's encoder is no inverse of its decoder), inverts the DDIM sampler and scores the
patterns, by sign agreement (``signs``) and by the search of ``genimage detect --invert``
(``search``). TPR at the 99th percentile of the 2n attacked negatives.

Random weights make images no one would want; what this measures is the machinery at SD's
size (memory, time per image, the latent path end to end) and whether a mark survives a VAE
round trip that is only as good as the decoder inversion, not a trained model's robustness.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from watermark_attacks import ATTACKS, selected_attacks  # noqa: E402


REAL_SIZE = 192


def write_random_sd512(folder: Path) -> None:
    """SD's format and latent geometry at 512 px, small enough for a CPU, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))
    from sd_tiny import _write_tokenizer  # a small real CLIP BPE tokenizer

    _write_tokenizer(folder.parent / f"{folder.name}-tokenizer")
    tok = CLIPTokenizer.from_pretrained(folder.parent / f"{folder.name}-tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16, 32, 32), layers_per_block=1, latent_channels=4, in_channels=3,
                        out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=tok.vocab_size, max_position_embeddings=77, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)


def main() -> None:
    from genimage.data.builtin import load_builtin
    from genimage.data.types import image_from_uint8, image_to_uint8
    from genimage.pipeline import Pipeline
    from genimage.provenance import noise_mark as N
    from genimage.provenance.dwtdct import default_message
    from genimage.provenance.watermark import key_id, watermark_key
    from noise_watermark_attacks import detection_cell, score  # the same two readings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="where the random SD folder is (written if absent)")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--patterns", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--decoder-steps", type=int, default=300)
    ap.add_argument("--decoder-lr", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--attacks", help="comma-separated attack names (default: all but regeneration)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.folder / "model_index.json").exists():
        write_random_sd512(args.folder)
    t0 = time.time()
    pipe = Pipeline.from_pretrained(str(args.folder))
    pipe.noise_mark = None
    n, size = args.n, pipe.config.image_size
    key = watermark_key()
    msg = default_message(key)
    opts = pipe.options(steps=args.steps, guidance=1.0, bf16=False)
    seeds = list(range(n))
    to_u8 = lambda x: [image_to_uint8(y) for y in x]  # noqa: E731
    tg = time.time()
    sets = {"unmarked": to_u8(pipe(seeds, prompts=[""] * n, options=opts, batch_size=args.batch))}
    gen_s = (time.time() - tg) / n
    pipe.noise_mark = {"method": N.METHOD, "key_id": key_id(key), "message": msg.hex(), "patterns": args.patterns}
    sets["marked"] = to_u8(pipe(seeds, prompts=[""] * n, options=opts, batch_size=args.batch))
    pipe.noise_mark = None
    real = load_builtin("photos", split="eval", image_size=REAL_SIZE, length=n)  # the largest eval crops there are
    sets["real"] = [np.asarray(Image.fromarray(image_to_uint8(real[i]["image"])).resize((size, size), Image.Resampling.BICUBIC))
                    for i in range(n)]
    c, h, w = pipe.config.latent_shape
    print(f"{args.folder}: {size} px, latents {c}x{h}x{w} ({c * h * w} noise elements), DDIM {args.steps} steps, "
          f"{gen_s:.1f} s per image generated; n = {n} per set; setup {time.time() - t0:.0f}s", flush=True)
    ap_names = [a for a in selected_attacks(ap, args.attacks) if a in ATTACKS]
    print("\n| attack | signs: TPR@1%FPR / bit acc. / median z marked, unmarked | search: TPR@1%FPR / bit acc. / "
          "median z marked, unmarked | s per image |")
    print("|---|---|---|---|")
    rows = {}
    for name in ap_names:
        ta = time.time()
        inv = {}
        for tag, (k, arrs) in enumerate(sets.items()):
            attacked = [np.asarray(ATTACKS[name](Image.fromarray(a), 1000 * (tag + 1) + i).convert("RGB"))
                        for i, a in enumerate(arrs)]
            x = torch.stack([image_from_uint8(a) for a in attacked])
            inv[k] = N.invert_images(pipe, x, batch_size=args.batch, decoder_steps=args.decoder_steps,
                                     decoder_lr=args.decoder_lr)
        row, cells = {}, []
        for det in ("signs", "search"):
            res = {k: score(v, key, msg, args.patterns, det) for k, v in inv.items()}
            row[det] = detection_cell(res["marked"], res["unmarked"], res["real"])
            cells.append(f"{row[det]['tpr']:.3f} / {row[det]['bit_accuracy']:.3f} / {row[det]['z_marked']:.1f}, "
                         f"{row[det]['z_unmarked']:.1f}")
        rows[name] = row
        print(f"| {name} | " + " | ".join(cells) + f" | {(time.time() - ta) / (3 * n):.1f} |", flush=True)
    k = [a for a in ap_names if a != "none"]
    if k:
        print(f"| **mean over the {len(k)} attacks** | " + " | ".join(
            f"{np.mean([rows[a][d]['tpr'] for a in k]):.3f}" for d in ("signs", "search")) + " | |")
    print(f"\ntotal {time.time() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder), "n": n, "generate_s": gen_s, "args": vars(args) | {
            "folder": str(args.folder), "json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
