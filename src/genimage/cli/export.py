"""``genimage export``: write a genimage model in another toolkit's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genimage.cli.common import handle_errors
from genimage.errors import GenimageError


@handle_errors
def export(
    model: Annotated[str, typer.Argument(help="Bundled model name, model folder or run folder")],
    to: Annotated[str, typer.Option("--to", help="Target format: diffusers")],
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write")],
) -> None:
    """Export a pixel UNet diffusion / flow model as a diffusers folder (UNet2DModel + a DDIM or
    flow-matching Euler scheduler equivalent to its noise path); see README for what cannot be exported."""
    if to != "diffusers":
        raise GenimageError(f"--to {to!r}: the only export format is diffusers")
    from genimage.interop.export import export_diffusers, read_export_info

    folder = export_diffusers(model, out)
    info = read_export_info(folder)
    typer.echo(f"wrote {folder}/ (diffusers UNet2DModel + {info['scheduler']}; {info['timestep']})")
