"""``genimage sample`` and ``genimage generate``: make images with a trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.errors import GenimageError

ModelOpt = Annotated[str, typer.Option(help="Bundled model name or a model/run folder")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="euler | heun | ddim | dpmpp_2m | ddpm (default: the model's)")]
ScheduleOpt = Annotated[Optional[str], typer.Option(help="uniform | karras (default: the model's)")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Sampler steps (default: the model's)")]
GuidanceOpt = Annotated[Optional[float], typer.Option(help="Classifier-free guidance weight (default: the model's)")]
IntervalOpt = Annotated[Optional[str], typer.Option(
    help="LO,HI: apply guidance only at path times LO <= t <= HI (t=1 is noise); one network evaluation "
         "instead of two elsewhere (default: the model's)")]
EtaOpt = Annotated[Optional[float], typer.Option(help="DDIM eta (0 = deterministic, 1 = DDPM)", show_default="0")]
PrecisionOpt = Annotated[Optional[bool], typer.Option("--bf16/--fp32", help="Network precision (default: auto: bf16 only where the hardware makes it fast)")]
WatermarkOpt = Annotated[bool, typer.Option(
    "--watermark/--no-watermark", help="Mark saved images invisibly (2 of 255 levels; images of at least 3,072 "
                                       "pixel values, e.g. 32x32 RGB; `genimage detect` finds it)")]
NoiseMarkOpt = Annotated[Optional[bool], typer.Option(
    "--noise-mark/--no-noise-mark", show_default="the model's: on where measured to work (config.json noise_mark)",
    help="Mark the initial noise (Gaussian Shading, keyed by $GENIMAGE_WATERMARK_KEY; recorded, replayed; found by "
         "inverting the sampler: `genimage detect --invert MODEL`). On by default for photos-pixel (found in 99.8% "
         "of its images, no measured quality cost); off elsewhere: digits pays with diversity, the latent and the "
         "well-trained flat-colour models lose it; see BENCHMARKS.md")]
LoraOpt = Annotated[Optional[list[str]], typer.Option(
    "--lora", help="PATH[:SCALE]: merge a LoRA (`genimage train --lora` output) into the UNet (repeatable; recorded)", show_default="none")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps (auto: CUDA where there is one). "
                                             "Noise is seeded on the CPU; images match bit for bit on the same device type")]
ControlOpt = Annotated[Optional[Path], typer.Option(
    help="Spatial control: a control image (edge map, sketch: white lines on black; segmentation: R/G/B = masks of "
         "the prompt's 1st/2nd/3rd object), square, the model's size or a multiple (box-averaged down); recorded, "
         "replay needs it again (--control)", show_default="none")]
ControlKindOpt = Annotated[Optional[str], typer.Option(help="Kind of the --control image: edges | sketch | segmentation",
                                                       show_default="the control model's first kind")]
ControlScaleOpt = Annotated[Optional[float], typer.Option(help="Control strength: 0 = the base model alone, 1 = as trained",
                                                          show_default="the control model's, 1.0")]
ControlModelOpt = Annotated[Optional[str], typer.Option(help="Control model (bundled name or folder; `genimage train --family control`)",
                                                        show_default="shapes-control")]
RuntimeOpt = Annotated[str, typer.Option(
    help="CPU runtime of the network: eager (PyTorch) | onnxruntime | openvino (pip install 'genimage[onnxruntime]' / "
         "'genimage[openvino]'; exported once per model and batch shape, cached; fp32, CPU; recorded; close to eager "
         "but not bit-exact with it, see BENCHMARKS.md 'CPU runtimes on the same network')")]
NprocOpt = Annotated[int, typer.Option(help="Processes on this machine, through torchrun (one CPU thread each unless "
                                            "OMP_NUM_THREADS is set): rank r makes images r, r+N, ...; the same files "
                                            "as one process")]


def parse_interval(text: str | None) -> tuple[float, float] | None:
    """``"LO,HI"`` -> ``(lo, hi)`` (checked); ``None`` stays ``None``."""
    if text is None:
        return None
    from genimage.generation import check_guidance_interval

    return check_guidance_interval(text.split(","))


def _options(pipe, sampler, schedule, steps, guidance, eta, bf16, interval=None):
    opts = pipe.options(sampler=sampler, schedule=schedule, steps=steps, guidance=guidance, bf16=bf16,
                        guidance_interval=parse_interval(interval))
    if eta is not None:
        if opts.sampler != "ddim":
            raise GenimageError("--eta applies only to --sampler ddim")
        opts.extra = {"eta": float(eta)}
    return opts


def _apply_control(pipe, control, kind, scale, control_model) -> None:
    """Set ``pipe.control`` from the --control options (nothing without --control)."""
    if control is None:
        if kind is not None or scale is not None or control_model is not None:
            raise GenimageError("--control-kind, --control-scale and --control-model need --control IMAGE")
        return
    from genimage.editing.control import build_control

    pipe.control = build_control(control, kind, control_model, scale, pipe.loaded)


def _apply_runtime(pipe, runtime: str, bf16_flag: bool | None, opts) -> None:
    """Run the backbone under ``--runtime`` (after LoRAs and control); a non-eager runtime is fp32,
    so the automatic bf16 choice turns off and an explicit --bf16 is refused."""
    from genimage.runtimes import check_runtime

    if check_runtime(runtime) != "eager":
        if bf16_flag:
            raise GenimageError(f"--runtime {runtime} runs fp32 only; drop --bf16 or use --runtime eager")
        opts.bf16 = False
    pipe.use_runtime(runtime, bf16=opts.bf16)


def _progress(total_steps: int, n_batches: int):
    from tqdm import tqdm

    bar = tqdm(total=total_steps * n_batches, desc="sample", unit="step", leave=False, disable=None)
    return bar, (lambda info: bar.update(1))


def _parse_label(config, text: str) -> int:
    from genimage.pipeline import parse_label

    return parse_label(config, text)


@handle_errors
def sample(
    model: ModelOpt,
    out_dir: Annotated[Path, typer.Option(help="Folder for the PNGs (0000.png, 0001.png, ...)")] = Path("samples"),
    num: Annotated[int, typer.Option("-n", "--num", help="Number of images")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i")] = 0,
    label: Annotated[Optional[str], typer.Option(help="Class label or class name for every image", show_default="classes in turn")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Text prompt for every image", show_default="none: unconditional")] = None,
    negative: Annotated[Optional[str], typer.Option(help="Negative prompt (text models)", show_default="none")] = None,
    sampler: SamplerOpt = None, schedule: ScheduleOpt = None, steps: StepsOpt = None,
    guidance: GuidanceOpt = None, guidance_interval: IntervalOpt = None, eta: EtaOpt = None,
    bf16: PrecisionOpt = None,
    grid: Annotated[Optional[Path], typer.Option(help="Also write all images as one grid PNG", show_default="none")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per network batch (does not change results)")] = 64,
    device: DeviceOpt = "auto",
    watermark: WatermarkOpt = True,
    noise_mark: NoiseMarkOpt = None,
    lora: LoraOpt = None,
    runtime: RuntimeOpt = "eager",
    nproc: NprocOpt = 1,
) -> None:
    """Sample images with their generation record embedded (see `genimage replay`)."""
    from genimage.cli.launch import maybe_relaunch, worker_device

    if num < 1:
        raise GenimageError(f"-n must be at least 1, got {num}")
    status = maybe_relaunch("sample", nproc)
    if status is not None:
        raise typer.Exit(status)
    from genimage.pipeline import Pipeline
    from genimage.utils.distributed import finish_process_group, init_process_group

    share = init_process_group()
    device = worker_device(device)
    config = _direct_family_config(model)
    if config is not None and runtime != "eager":
        raise GenimageError(f"--runtime applies to diffusion models, not to this {config.family} model; drop --runtime")
    if config is not None and noise_mark:
        raise GenimageError(f"--noise-mark needs a sampler's initial noise; this {config.family} model has none to mark")
    if config is not None:
        _sample_direct(model, config, num, seed, label, prompt, out_dir, grid, device, watermark, share)
        finish_process_group()
        return
    pipe = Pipeline.from_pretrained(model, device=device)
    pipe.watermark = watermark
    _apply_noise_mark(pipe, noise_mark)
    _apply_loras(pipe, lora)
    opts = _options(pipe, sampler, schedule, steps, guidance, eta, bf16, guidance_interval)
    _apply_runtime(pipe, runtime, bf16, opts)
    seeds = list(range(seed, seed + num))
    labels = [_parse_label(pipe.config, label)] * num if label is not None else None
    if labels is None and pipe.conditioner.uses_labels:
        labels = [i % pipe.config.num_classes for i in range(num)]
    prompts = [prompt] * num if prompt is not None else None
    _write(pipe, seeds, labels, prompts, negative, opts, [out_dir / f"{i:04d}.png" for i in range(num)], grid,
           batch_size, share=share)
    finish_process_group()


def _apply_noise_mark(pipe, enabled: bool | None) -> None:
    """``None`` keeps the model's default (:attr:`genimage.pipeline.Pipeline.noise_mark`)."""
    if enabled:
        from genimage.provenance.noise_mark import model_entry

        pipe.noise_mark = model_entry(pipe.config)
    elif enabled is False:
        pipe.noise_mark = None


def _apply_loras(pipe, specs) -> None:
    if specs:
        from genimage.interop.lora import apply_lora_specs

        apply_lora_specs(pipe, specs)


def _direct_family_config(model: str):
    """The config of ``model`` if it belongs to a one-pass family (GAN, VAE, flow, autoencoder), else ``None``."""
    from genimage.families.records import is_direct
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder

    config = ModelConfig.load(resolve_model_folder(model))
    return config if is_direct(config.family) else None


def _sample_direct(model: str, config, num: int, seed: int, label: str | None, prompt: str | None, out_dir: Path,
                   grid: Path | None, device: str = "cpu", watermark: bool = True,
                   share: tuple[int, int] = (0, 1)) -> None:
    import time

    from genimage.utils.distributed import gather_sharded, shard

    from genimage.families.records import sample_direct

    if prompt is not None:
        raise GenimageError(f"this {config.family} model is not text-conditional; drop --prompt")
    if label is not None and not config.num_classes:
        raise GenimageError(f"this {config.family} model is unconditional; drop --label")
    labels = None
    if config.num_classes:
        if label is None:
            labels = [i % config.num_classes for i in range(num)]
        else:
            labels = [_parse_label(config, label)] * num
    seeds, paths = list(range(seed, seed + num)), [out_dir / f"{i:04d}.png" for i in range(num)]
    rank, world = share
    if world > 1:  # rank r makes images r, r + world, ...
        seeds, paths = shard(seeds, rank, world), shard(paths, rank, world)
        labels = shard(labels, rank, world) if labels is not None else None
    t0 = time.perf_counter()
    shape = (config.channels, config.image_size, config.image_size)
    images, written = (sample_direct(model, seeds, labels, paths, device, watermark) if seeds
                       else (_no_images(shape), []))
    dt = time.perf_counter() - t0
    if world > 1:
        images = gather_sharded(images, num, shape, rank, world) if grid is not None else images
        if rank != 0:
            return
        written = [out_dir / f"{i:04d}.png" for i in range(num)]
    if grid is not None:
        from genimage.data.image_io import save_image_grid

        save_image_grid(images, grid)
        typer.echo(f"grid: {grid}")
    procs = f", {world} processes" if world > 1 else ""
    typer.echo(f"wrote {out_dir}/ ({len(written)} images, {config.family}{procs}) in {dt:.2f}s "
               f"({len(written) / dt:.1f} images/s)")


def _pixel_shape(config) -> tuple[int, int, int]:
    return (config.channels, config.image_size, config.image_size)


def _no_images(shape) -> "torch.Tensor":
    """No images of ``shape`` (a rank without seeds)."""
    import torch

    return torch.empty((0, *shape))


def _write(pipe, seeds, labels, prompts, negative, opts, paths, grid, batch_size, edit=None,
           share: tuple[int, int] = (0, 1)) -> None:
    """Generate and save image ``i`` of ``seeds`` to ``paths[i]``; with ``share = (rank, world)``
    of several processes this rank does images ``rank::world`` and rank 0 reports (and writes the grid)."""
    import time

    from genimage.utils.distributed import gather_sharded, shard

    rank, world = share
    total = len(seeds)
    if world > 1:
        seeds, paths = shard(seeds, rank, world), shard(paths, rank, world)
        labels, prompts = (None if v is None else shard(v, rank, world) for v in (labels, prompts))
        if not seeds:  # fewer images than processes
            if grid is not None:
                gather_sharded(_no_images(_pixel_shape(pipe.config)), total, _pixel_shape(pipe.config), rank, world)
            return
    if pipe.conditioner.uses_text:
        pipe.conditioner.text_encoder  # load the encoder before timing generation
    steps = opts.steps if edit is None else edit.steps_to_run(opts.steps)
    bar, cb = _progress(steps, -(-len(seeds) // batch_size))
    t0 = time.perf_counter()
    images = pipe(seeds, labels=labels, prompts=prompts, negative=negative, options=opts, batch_size=batch_size,
                  callback=cb, edit=edit)
    bar.close()
    dt = time.perf_counter() - t0
    records = pipe.records(seeds, labels, prompts, negative, opts, edit=edit)
    written = pipe.save(images, records, paths)
    if world > 1:
        images = gather_sharded(images, total, _pixel_shape(pipe.config), rank, world) if grid is not None else images
        if rank != 0:
            return
    settings = {k: v for k, v in json.loads(records[0].to_json()).items() if k not in ("seed", "prompt", "label")}
    typer.echo(f"settings: {json.dumps(settings, sort_keys=True)}")
    if grid is not None:
        from genimage.data.image_io import save_image_grid

        save_image_grid(images, grid)
        typer.echo(f"grid: {grid}")
    where = written[0] if total == 1 else f"{written[0].parent}/ ({total} images" + (
        f", {world} processes)" if world > 1 else ")")
    typer.echo(f"wrote {where} in {dt:.2f}s ({total / dt:.1f} images/s)")


@handle_errors
def generate(
    prompt: Annotated[Optional[str], typer.Argument(help="Prompt (text models) or class label/name (class models)")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output PNG for a single prompt", show_default="out.png")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="File with one prompt per line", show_default="none")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="Folder for --prompts output (0000.png, ...)", show_default="none")] = None,
    model: ModelOpt = "shapes",
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i")] = 0,
    negative: Annotated[Optional[str], typer.Option(help="Negative prompt", show_default="none")] = None,
    sampler: SamplerOpt = None, schedule: ScheduleOpt = None, steps: StepsOpt = None,
    guidance: GuidanceOpt = None, guidance_interval: IntervalOpt = None, eta: EtaOpt = None,
    bf16: PrecisionOpt = None,
    size: Annotated[Optional[int], typer.Option(help="Image size (must equal the model's)", show_default="the model's")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per network batch")] = 64,
    device: DeviceOpt = "auto",
    watermark: WatermarkOpt = True,
    noise_mark: NoiseMarkOpt = None,
    lora: LoraOpt = None,
    nproc: NprocOpt = 1,
    control: ControlOpt = None, control_kind: ControlKindOpt = None, control_scale: ControlScaleOpt = None,
    control_model: ControlModelOpt = None,
    runtime: RuntimeOpt = "eager",
) -> None:
    """Generate from a prompt (default model: the bundled shapes model), optionally laid out by a
    control image (--control)."""
    from genimage.cli.launch import maybe_relaunch, worker_device
    from genimage.pipeline import Pipeline
    from genimage.utils.distributed import finish_process_group, init_process_group

    if (prompt is None) == (prompts is None):
        raise GenimageError("give either a PROMPT or --prompts FILE")
    if prompts is not None:
        if not prompts.is_file():
            raise GenimageError(f"prompts file not found: {prompts}")
        lines = [ln.strip() for ln in prompts.read_text().splitlines() if ln.strip()]
        if not lines:
            raise GenimageError(f"{prompts} has no prompts")
        if out_dir is None:
            raise GenimageError("--prompts needs --out-dir")
        paths = [out_dir / f"{i:04d}.png" for i in range(len(lines))]
    else:
        lines = [prompt]
        paths = [output or Path("out.png")]
    status = maybe_relaunch("generate", nproc)
    if status is not None:
        raise typer.Exit(status)
    share = init_process_group()
    pipe = Pipeline.from_pretrained(model, device=worker_device(device))
    pipe.watermark = watermark
    _apply_noise_mark(pipe, noise_mark)
    _apply_loras(pipe, lora)
    _apply_control(pipe, control, control_kind, control_scale, control_model)
    if size is not None and size != pipe.config.image_size:
        raise GenimageError(f"--size {size}: this model generates {pipe.config.image_size}px images only")
    opts = _options(pipe, sampler, schedule, steps, guidance, eta, bf16, guidance_interval)
    _apply_runtime(pipe, runtime, bf16, opts)
    seeds = list(range(seed, seed + len(lines)))
    if pipe.conditioner.uses_text:
        labels, texts = None, lines
    elif pipe.conditioner.uses_labels:
        labels, texts = [_parse_label(pipe.config, ln) for ln in lines], None
    else:
        raise GenimageError("this model is unconditional; use `genimage sample`")
    _write(pipe, seeds, labels, texts, negative, opts, paths, None, batch_size, share=share)
    finish_process_group()
