"""``genimage edit``: img2img, inpainting and outpainting of an input image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.cli.sample import (
    DeviceOpt, EtaOpt, GuidanceOpt, IntervalOpt, ModelOpt, PrecisionOpt, SamplerOpt, ScheduleOpt, StepsOpt,
    WatermarkOpt, _options, _parse_label, _write,
)
from genimage.errors import GenimageError


@handle_errors
def edit(
    image: Annotated[Path, typer.Argument(help="Input image (any size: center-cropped and resized to the model's)")],
    mask: Annotated[Optional[Path], typer.Option(help="Inpainting mask: white = regenerate, black = keep", show_default="none")] = None,
    extend: Annotated[Optional[str], typer.Option(
        help="Outpaint: LEFT,TOP,RIGHT,BOTTOM pixels (or one number) of new border; the input shrinks to make room", show_default="none")] = None,
    strength: Annotated[Optional[float], typer.Option(
        help="Fraction of the sampling schedule run over the noised input, (0, 1]: low keeps more of it "
             "(default 0.6 for img2img, 1.0 with --mask / --extend)")] = None,
    upscale: Annotated[Optional[int], typer.Option(
        help="Super-resolution by FACTOR (pixel models): the input is read at 1/FACTOR of the model's size and the "
             "output averages back to it over FACTOR x FACTOR blocks (DDNM)", show_default="none")] = None,
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
) -> None:
    """Edit an image: img2img (default), inpainting (--mask), outpainting (--extend) or
    super-resolution (--upscale). Each PNG embeds its record; `genimage replay OUT --init IMAGE
    [--mask MASK]` regenerates it."""
    from genimage.editing.spec import build_edit, parse_extend
    from genimage.families.records import is_direct
    from genimage.generation import check_edit
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder
    from genimage.pipeline import Pipeline

    if num < 1:
        raise GenimageError(f"-n must be at least 1, got {num}")
    border = parse_extend(extend) if extend is not None else None
    family = ModelConfig.load(resolve_model_folder(model)).family
    if is_direct(family):
        raise GenimageError(f"editing needs a diffusion or flow model (it noises and denoises the input); "
                            f"{model} is a {family} model")
    if num > 1 and out_dir is None:
        raise GenimageError("-n > 1 needs --out-dir")
    paths = [output or Path("edit.png")] if num == 1 and out_dir is None else \
        [out_dir / f"{i:04d}.png" for i in range(num)]  # type: ignore[operator]

    pipe = Pipeline.from_pretrained(model, device=device)
    pipe.watermark = watermark
    cfg = pipe.config
    spec = build_edit(image, cfg.image_size, cfg.channels, mask=mask, extend=border, upscale=upscale,
                      strength=strength, resample=resample)
    opts = _options(pipe, sampler, schedule, steps, guidance, eta, bf16, guidance_interval)
    check_edit(spec, num, cfg)
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
    source = f"{cfg.image_size // upscale}px -> {cfg.image_size}px" if upscale else f"at {cfg.image_size}px"
    typer.echo(f"{spec.mode}: {image} {source}, strength {spec.strength} "
               f"({run} of {opts.steps} {opts.sampler} steps" + (f", each x{resample}" if resample > 1 else "") + ")")
    _write(pipe, seeds, labels, prompts, negative, opts, paths, grid, batch_size, edit=spec)
