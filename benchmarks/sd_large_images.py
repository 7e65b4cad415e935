"""256 / 512 px generation with a Stable-Diffusion-1.5-sized imported model on the CPU.

Random weights in SD 1.5's exact architecture (UNet2DConditionModel 860M parameters,
AutoencoderKL 84M, CLIP ViT-L text encoder 123M) are written once as a diffusers folder
and imported through genimage's Stable-Diffusion path (``Pipeline.from_pretrained``), with
an SD-Turbo-style scheduler (trailing spacing, no guidance), as SD-Turbo / LCM sample in
1-4 steps. Each configuration runs in its own process so that its peak memory (max RSS) is
its own.

    nice -n 10 python benchmarks/sd_large_images.py --folder /tmp/sd15-random [--threads 2]

Prints a markdown table: seconds per UNet step, VAE decode, whole image (wall clock, and CPU
seconds of the process divided by the thread count: on a shared machine the wall clock
includes waiting for the cores, the CPU time much less so), peak RSS.
Variants: fp32 / bf16 autocast, diffusers' default SDPA attention vs sliced attention,
tiled VAE decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write_random_sd15(folder: Path, tokenizer_dir: Path) -> None:
    """SD 1.5's architecture with random weights, saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))
    from sd_tiny import _write_tokenizer  # a small real CLIP BPE tokenizer (SD's 49408-token vocab is not on disk)

    _write_tokenizer(tokenizer_dir)
    tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing")
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in (("unet", unet), ("vae", vae), ("text", text))}
    (folder / "params.json").write_text(json.dumps(params))


def sized_copy(folder: Path, size: int) -> Path:
    """A folder that links ``folder``'s parts but declares ``size`` px (UNet sample_size)."""
    if size == 512:
        return folder
    out = folder.parent / f"{folder.name}-{size}"
    if not out.exists():
        out.mkdir()
        for entry in folder.iterdir():
            if entry.name != "unet":
                (out / entry.name).symlink_to(entry)
        (out / "unet").mkdir()
        (out / "unet" / "diffusion_pytorch_model.safetensors").symlink_to(folder / "unet" / "diffusion_pytorch_model.safetensors")
        cfg = json.loads((folder / "unet" / "config.json").read_text())
        cfg["sample_size"] = size // 8
        (out / "unet" / "config.json").write_text(json.dumps(cfg))
    return out


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from genimage.latent.autoencoder import attached_autoencoder
    from genimage.pipeline import Pipeline

    t0 = time.perf_counter()
    pipe = Pipeline.from_pretrained(args.model)
    load_s = time.perf_counter() - t0
    unet = pipe.loaded.denoiser.network.diffusers_model
    vae = attached_autoencoder(pipe.loaded.denoiser).model.vae
    if args.attention == "sliced":
        unet.set_attention_slice("auto")
    if args.tiled_vae:
        vae.enable_tiling()
        vae.tile_sample_min_size = 256  # tiles of 256 px (32 latents), blended
        vae.tile_latent_min_size = 32
    opts = pipe.options(steps=args.steps, guidance=1.0, bf16=args.bf16)
    pipe.conditioner.text_encoder.encode(["warm-up"])
    stamps, cpu_stamps = [], []
    t0 = time.perf_counter()
    text_t0 = time.perf_counter()
    pipe.conditioner(captions=["a photo of a cat"])
    text_s = time.perf_counter() - text_t0
    def stamp(_):
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    start, cpu_start = time.perf_counter(), time.process_time()
    images = pipe(seeds=[0], prompts=["a photo of a cat"], options=opts, callback=stamp)
    total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
    steps = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    cpu_steps = [b - a for a, b in zip([cpu_start] + cpu_stamps[:-1], cpu_stamps)]
    decode = total - (stamps[-1] - start)
    cpu_decode = cpu_total - (cpu_stamps[-1] - cpu_start)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"size": images.shape[-1], "steps": args.steps, "bf16": args.bf16, "attention": args.attention,
                      "tiled_vae": args.tiled_vae, "load_s": load_s, "text_s": text_s, "step_s": steps,
                      "decode_s": decode, "image_s": total,
                      "cpu_step_s": cpu_steps, "cpu_decode_s": cpu_decode, "cpu_image_s": cpu_total, "peak_gib": peak_gib, "threads": args.threads}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=Path("/tmp/sd15-random"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model", type=str)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--attention", default="sdpa", choices=["sdpa", "sliced"])
    ap.add_argument("--tiled-vae", action="store_true")
    ap.add_argument("--configs", default="256:1,512:1,512:2,512:1:bf16,512:1:sliced,512:1:tiled",
                    help="SIZE:STEPS[:bf16][:sliced][:tiled], comma-separated")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if not (args.folder / "model_index.json").is_file():
        write_random_sd15(args.folder, args.folder.parent / f"{args.folder.name}-tokenizer")
    params = json.loads((args.folder / "params.json").read_text())
    rows = []
    for spec in args.configs.split(","):
        size, steps, *flags = spec.split(":")
        cmd = [sys.executable, __file__, "--worker", "--model", str(sized_copy(args.folder, int(size))),
               "--steps", steps, "--threads", str(args.threads)]
        cmd += ["--bf16"] if "bf16" in flags else []
        cmd += ["--attention", "sliced"] if "sliced" in flags else []
        cmd += ["--tiled-vae"] if "tiled" in flags else []
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not line:
            print(out.stderr[-2000:], file=sys.stderr)
            continue
        rows.append(json.loads(line[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"parameters: UNet {params['unet'] / 1e6:.0f}M, VAE {params['vae'] / 1e6:.0f}M, text {params['text'] / 1e6:.0f}M; "
          f"{args.threads} threads")
    print("| px | steps | precision | attention | VAE | s/step wall (CPU/threads) | decode s wall (CPU/threads) "
          "| s/image wall (CPU/threads) | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    n = args.threads
    for r in rows:
        med = sorted(r["step_s"])[len(r["step_s"]) // 2]
        cmed = sorted(r["cpu_step_s"])[len(r["cpu_step_s"]) // 2] / n
        print(f"| {r['size']} | {r['steps']} | {'bf16' if r['bf16'] else 'fp32'} | {r['attention']} | "
              f"{'tiled' if r['tiled_vae'] else 'whole'} | {med:.1f} ({cmed:.1f}) | {r['decode_s']:.1f} "
              f"({r['cpu_decode_s'] / n:.1f}) | {r['image_s']:.1f} ({r['cpu_image_s'] / n:.1f}) | {r['peak_gib']:.1f} |")


if __name__ == "__main__":
    main()
