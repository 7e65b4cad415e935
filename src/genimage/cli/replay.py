"""``genimage replay`` and ``genimage info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.errors import GenimageError


@handle_errors
def replay(
    image: Annotated[Path, typer.Argument(help="A PNG written by genimage")],
    model: Annotated[Optional[str], typer.Option(help="Use this model instead of the recorded one", show_default="the recorded one")] = None,
    device: Annotated[Optional[str], typer.Option(help="Where to regenerate (default: the recorded device type, "
                                                       "where bit-for-bit agreement is expected)")] = None,
    init: Annotated[Optional[Path], typer.Option(help="For an edited image: the input it was made from", show_default="none")] = None,
    mask: Annotated[Optional[Path], typer.Option(help="For an inpainted image: its mask", show_default="none")] = None,
    control: Annotated[Optional[Path], typer.Option(help="For an image made with --control: its control image", show_default="none")] = None,
    style: Annotated[Optional[Path], typer.Option(help="For a style transfer: the style image", show_default="none")] = None,
    runtime: Annotated[Optional[str], typer.Option(help="CPU runtime of the network: eager | onnxruntime | openvino "
                                                        "(a non-eager runtime is not bit-exact with eager)",
                                                   show_default="the recorded one")] = None,
) -> None:
    """Regenerate an image from its embedded record; exit 0 if it matches bit for bit, 1 if not."""
    from genimage.families.records import is_direct, replay_direct
    from genimage.pipeline import replay as do_replay
    from genimage.provenance.record import read_record

    record = read_record(image)
    if runtime is not None and is_direct(record.sampler):
        raise GenimageError("--runtime applies to diffusion models; this image was made by a one-pass model")
    result = (replay_direct(record, image, model, device) if is_direct(record.sampler)
              else do_replay(image, model, device, init=init, mask=mask, control=control, style=style,
                             runtime=runtime))
    from genimage.runtimes import recorded_runtime

    made = recorded_runtime(record.runtime)
    used = runtime or made
    if made != "eager" or used != "eager":
        version = f" {record.runtime.get('version')}" if record.runtime else ""
        typer.echo(f"note: made with runtime {made}{version}, replayed with {used}: a non-eager runtime is not "
                   f"bit-exact with eager; a bit-for-bit match is expected only with the same runtime, version, CPU "
                   f"and thread count", err=True)
    typer.echo(f"record: {result.record.to_json()}")
    if not result.weights_match:
        typer.echo("warning: the model's weights differ from the recorded sha256", err=True)
    if result.match:
        typer.echo("match: regenerated image is bit-for-bit identical")
    else:
        typer.echo(f"MISMATCH: {result.differing_pixels} values differ, max difference {result.max_abs_diff}")
        raise typer.Exit(1)


@handle_errors
def info(model: Annotated[str, typer.Argument(help="Bundled model name, model folder or run folder")]) -> None:
    """Show a model's config, size and training record."""
    from genimage.families.io import load_generator
    from genimage.models.config import WEIGHTS_FILE

    from genimage.interop.sd_import import is_sd_source, sd_weight_files
    from genimage.models.io import resolve_model_folder

    if is_sd_source(resolve_model_folder(model)):  # a Stable-Diffusion-format model: its UNet counts
        from genimage.models.io import load_model

        loaded = load_model(model)
        params = sum(p.numel() for p in loaded.denoiser.parameters())
        size = sum(f.stat().st_size for f in sd_weight_files(loaded.folder))
    else:
        loaded = load_generator(model)
        params = sum(p.numel() for p in loaded.model.parameters())
        size = (loaded.folder / WEIGHTS_FILE).stat().st_size
    typer.echo(f"folder: {loaded.folder}")
    typer.echo(f"parameters: {params:,}  weights: {size / 1e6:.2f} MB  sha256: {loaded.weights_sha256}")
    typer.echo(f"training steps: {loaded.config.training.get('steps', 'unknown')}")
    typer.echo(json.dumps(loaded.config.to_dict(), indent=2, sort_keys=True))
