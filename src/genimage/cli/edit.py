"""``genimage edit``: img2img, inpainting, outpainting (beyond the canvas) and super-resolution of an input image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.cli.sample import (
    ControlKindOpt, ControlModelOpt, ControlOpt, ControlScaleOpt, DeviceOpt, EtaOpt, GuidanceOpt, IntervalOpt, LoraOpt, ModelOpt, PrecisionOpt, SamplerOpt, ScheduleOpt, StepsOpt,
    WatermarkOpt, _apply_control, _apply_loras, _options, _parse_label,
)
from genimage.errors import GenimageError


@handle_errors
def edit(
    image: Annotated[Path, typer.Argument(help="Input image of any size: the output has its size and aspect (--extend: larger "
                                               "by the border; --upscale F: F times it); the model edits it resized to its "
                                               "own size, window by window, or tile by tile")],
    mask: Annotated[Optional[Path], typer.Option(help="Inpainting mask: white = regenerate, black = keep", show_default="none")] = None,
    extend: Annotated[Optional[str], typer.Option(
        help="Outpaint: LEFT,TOP,RIGHT,BOTTOM pixels (or one number) of new border around the input, at the input's "
             "scale; the output is that much larger than the input", show_default="none")] = None,
    extend_mode: Annotated[str, typer.Option(
        help="Outpaint: windows = paint the enlarged canvas by overlapping windows of the model's size (MultiDiffusion; "
             "the input's shorter side at the model's size), shrink = squash the whole canvas into one window")] = "windows",
    overlap: Annotated[Optional[int], typer.Option(
        help="Outpaint windows: overlap of adjacent windows in pixels at the model's scale (0 = side by side)",
        show_default="half the model's side")] = None,
    strength: Annotated[Optional[float], typer.Option(
        help="Fraction of the sampling schedule run over the noised input, (0, 1]: low keeps more of it "
             "(default 0.6 for img2img, 1.0 with --mask / --extend / DDNM --upscale, the upscaler's own (0.5) "
             "with a trained --upscaler: it starts from the noised bicubic image)")] = None,
    upscale: Annotated[Optional[int], typer.Option(
        help="Super-resolution by FACTOR (pixel models): the output is FACTOR times the input's size; the input is cut "
             "into overlapping tiles of 1/FACTOR of the model's size, each super-resolved so that it averages back to "
             "its tile over FACTOR x FACTOR blocks (DDNM), and the tiles are blended", show_default="none")] = None,
    resample: Annotated[int, typer.Option(
        help="Inpaint / outpaint: take each step this many times, re-noising in between (RePaint): the new "
             "region fits the kept one better, at this many times the network evaluations")] = 1,
    prompt: Annotated[Optional[str], typer.Option(help="Text prompt (text models)", show_default="none: unconditional")] = None,
    label: Annotated[Optional[str], typer.Option(
        help="Class label or name (class models; without it the edit is unconditional)", show_default="none")] = None,
    negative: Annotated[Optional[str], typer.Option(help="Negative prompt (text models)", show_default="none")] = None,
    num: Annotated[int, typer.Option("-n", "--num", help="Number of variations (seeds seed .. seed+n-1)")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first variation")] = 0,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output PNG when -n is 1", show_default="edit.png")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="Folder for -n > 1 (0000.png, ...)", show_default="none")] = None,
    model: ModelOpt = "shapes",
    sampler: SamplerOpt = None, schedule: ScheduleOpt = None, steps: StepsOpt = None,
    guidance: GuidanceOpt = None, guidance_interval: IntervalOpt = None, eta: EtaOpt = None,
    bf16: PrecisionOpt = None, device: DeviceOpt = "auto",
    grid: Annotated[Optional[Path], typer.Option(help="Also write all outputs as one grid PNG", show_default="none")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per network batch (does not change results)")] = 64,
    watermark: WatermarkOpt = True,
    lora: LoraOpt = None,
    control: ControlOpt = None, control_kind: ControlKindOpt = None, control_scale: ControlScaleOpt = None,
    control_model: ControlModelOpt = None,
    upscaler: Annotated[Optional[str], typer.Option(
        help="--upscale with a trained upscaler (genimage train --family superres; bundled: photos-x4, shapes-x4) "
             "or 'ddnm' (DDNM with --model)",
        show_default="--model if it is an upscaler; else the bundled photos-x4 (x4, RGB, tiles of 16 -> 64 px) "
                     "when --model is a latent model such as the default shapes; else ddnm")] = None,
    style: Annotated[Optional[Path], typer.Option(
        help="Style transfer: give the input the style of this image (AdaIN in an autoencoder; any sizes; "
             "deterministic)", show_default="none")] = None,
    style_strength: Annotated[float, typer.Option(help="--style: 0 keeps the input's feature statistics, 1 takes "
                                                       "the style image's")] = 1.0,
    style_method: Annotated[str, typer.Option(help="--style: AdaIN of pixels (colour statistics) | latent | "
                                                   "decoder (every stage of --style-autoencoder's decoder); "
                                                   "BENCHMARKS.md, Style transfer")] = "pixels",
    style_autoencoder: Annotated[Optional[str], typer.Option(
        help="--style: autoencoder folder (or a latent model, for its autoencoder)",
        show_default="the bundled shapes autoencoder")] = None,
) -> None:
    """Edit an image: img2img (default), inpainting (--mask), outpainting (--extend),
    super-resolution (--upscale: a trained upscaler, or DDNM with a pixel-space --model) or style
    transfer (--style). Each PNG embeds its record; `genimage replay OUT --init IMAGE
    [--mask MASK]` regenerates it."""
    from genimage.editing.canvas import build_canvas_edit
    from genimage.editing.plan import model_factor
    from genimage.editing.spec import parse_extend
    from genimage.families.records import is_direct
    from genimage.generation import check_edit
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder
    from genimage.pipeline import Pipeline

    if num < 1:
        raise GenimageError(f"-n must be at least 1, got {num}")
    border = parse_extend(extend) if extend is not None else None
    family = ModelConfig.load(resolve_model_folder(model)).family
    if style is not None:  # genimage.editing.style
        from genimage.cli.style import run_style

        others = {"--mask": mask, "--extend": extend, "--upscale": upscale, "--strength": strength,
                  "--prompt": prompt, "--label": label, "--negative": negative, "--upscaler": upscaler,
                  "--lora": lora or None, "--grid": grid}
        run_style(image, style, strength=style_strength, method=style_method, autoencoder=style_autoencoder,
                  output=output, num=num, out_dir=out_dir, watermark=watermark, others=others)
        return
    from genimage.cli.upscale import choose_upscaler, run_upscaler

    chosen = choose_upscaler(model, family, upscale, upscaler)
    if chosen is not None:  # a trained superres model (genimage.editing.superres)
        if num > 1 and out_dir is None:
            raise GenimageError("-n > 1 needs --out-dir")
        if mask is not None or extend is not None:
            raise GenimageError("give one of --mask (inpaint), --extend (outpaint) or --upscale, not several")
        paths = [output or Path("edit.png")] if num == 1 and out_dir is None else \
            [out_dir / f"{i:04d}.png" for i in range(num)]  # type: ignore[operator]
        run_upscaler(chosen, image, upscale, strength=strength, resample=resample, prompt=prompt, label=label,
                     negative=negative, guidance=guidance, guidance_interval=guidance_interval, eta=eta, lora=lora,
                     steps=steps, sampler=sampler, schedule=schedule, seeds=list(range(seed, seed + num)),
                     paths=paths, grid=grid, batch_size=batch_size, device=device, watermark=watermark)
        return
    if is_direct(family):
        raise GenimageError(f"editing needs a diffusion or flow model (it noises and denoises the input); "
                            f"{model} is a {family} model")
    if num > 1 and out_dir is None:
        raise GenimageError("-n > 1 needs --out-dir")
    paths = [output or Path("edit.png")] if num == 1 and out_dir is None else \
        [out_dir / f"{i:04d}.png" for i in range(num)]  # type: ignore[operator]

    pipe = Pipeline.from_pretrained(model, device=device)
    pipe.watermark = watermark
    _apply_loras(pipe, lora)
    cfg = pipe.config
    if overlap is not None and (border is None or extend_mode != "windows"):
        raise GenimageError("--overlap applies to outpainting by windows (--extend with --extend-mode windows)")
    canvas = build_canvas_edit(image, cfg.image_size, cfg.channels, mask=mask, extend=border, upscale=upscale,
                               strength=strength, resample=resample, overlap=overlap, extend_mode=extend_mode,
                               grid=model_factor(cfg))
    spec = canvas.spec
    _apply_control(pipe, control, control_kind, control_scale, control_model)
    if pipe.control is not None and (canvas.rows != 1 or spec.window_overlap is not None):
        raise GenimageError(f"--control needs an input the model edits in one piece (a square image of the model's "
                            f"{cfg.image_size}px, or a multiple, without --extend / --upscale)")
    opts = _options(pipe, sampler, schedule, steps, guidance, eta, bf16, guidance_interval)
    check_edit(canvas.batch_spec(num), num * canvas.rows, cfg)
    run = spec.steps_to_run(opts.steps)
    seeds = list(range(seed, seed + num))
    labels = None
    if pipe.conditioner.uses_labels:  # no --label: unconditional (the model decides the class from the input)
        labels = [_parse_label(cfg, label)] * num if label is not None else None
    elif label is not None:
        raise GenimageError("this model is not class-conditional; drop --label")
    prompts = [prompt] * num if prompt is not None else None
    if pipe.conditioner.uses_text and prompts is None:
        prompts = [""] * num  # unconditional: guidance has nothing to push toward
    typer.echo(f"{spec.mode}: {image} {canvas.describe()}; strength {spec.strength} "
               f"({run} of {opts.steps} {opts.sampler} steps" + (f", each x{resample}" if resample > 1 else "") + ")")
    _write_canvas(pipe, canvas, seeds, labels, prompts, negative, opts, paths, grid, batch_size)


def _write_canvas(pipe, canvas, seeds, labels, prompts, negative, opts, paths, grid, batch_size) -> None:
    """Run a canvas edit for every seed, save each output with its record, print what was written."""
    import json
    import time

    from genimage.cli.sample import _progress
    from genimage.editing.canvas import canvas_records, run_canvas_edit

    if pipe.conditioner.uses_text:
        pipe.conditioner.text_encoder  # load the encoder before timing the edit
    bar, cb = _progress(canvas.spec.steps_to_run(opts.steps), -(-len(seeds) * canvas.rows // batch_size))
    t0 = time.perf_counter()
    images = run_canvas_edit(pipe, canvas, seeds, labels, prompts, negative, opts, batch_size, cb)
    bar.close()
    dt = time.perf_counter() - t0
    records = canvas_records(pipe, canvas, seeds, labels, prompts, negative, opts)
    written = pipe.save(images, records, paths)
    settings = {k: v for k, v in json.loads(records[0].to_json()).items() if k not in ("seed", "prompt", "label")}
    typer.echo(f"settings: {json.dumps(settings, sort_keys=True)}")
    if grid is not None:
        import torch

        from genimage.data.image_io import save_image_grid

        save_image_grid(torch.stack(images), grid)
        typer.echo(f"grid: {grid}")
    where = written[0] if len(written) == 1 else f"{written[0].parent}/ ({len(written)} images)"
    typer.echo(f"wrote {where} in {dt:.2f}s ({len(written) / dt:.1f} images/s)")
