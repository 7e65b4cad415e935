"""``genimage data ...``: dataset commands (mounted by the main CLI as ``genimage data``).

Example::

    genimage data inspect ./my_photos --grid preview.png
    genimage data inspect builtin:shapes --image-size 32 --length 500 --opt num_classes=4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors, parse_key_values
from genimage.errors import GenimageError

#: genimage.data.image_io.DEFAULT_MAX_PIXELS, written out so that `--help` need not import torch (a test checks).
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024

app = typer.Typer(help="Inspect and describe datasets.", no_args_is_help=True, add_completion=False)


@app.callback()
def _data() -> None:
    """Inspect and describe datasets."""


@app.command("inspect")
@handle_errors
def inspect_command(
    target: Annotated[str, typer.Argument(help="An image folder, or builtin:NAME for a built-in dataset.")],
    grid: Annotated[Path, typer.Option(help="Where to save the preview grid PNG (up to 64 images).")] = Path(
        "inspect_grid.png"
    ),
    no_grid: Annotated[bool, typer.Option("--no-grid", help="Do not write a preview grid.")] = False,
    image_size: Annotated[
        Optional[int], typer.Option(help="Item size in pixels (default: 64 for folders, the built-in's default).")
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(help="Folders: pixel cap; larger files are reported as 'over pixel cap'.")
    ] = DEFAULT_MAX_PIXELS,
    split: Annotated[str, typer.Option(help="Built-ins: split.")] = "train",
    seed: Annotated[int, typer.Option(help="Built-ins: generation seed.")] = 0,
    length: Annotated[Optional[int], typer.Option(help="Built-ins: number of items.", show_default="the dataset's")] = None,
    opt: Annotated[
        Optional[list[str]], typer.Option(help="Built-ins: extra argument KEY=VALUE (repeatable).", show_default="none")
    ] = None,
    manifest: Annotated[
        Optional[Path], typer.Option(help="Also write the dataset manifest (JSON) to this file.", show_default="none")
    ] = None,
    bad_files_report: Annotated[
        Optional[Path], typer.Option(help="Folders: also write the bad-file list (.jsonl or .tsv).", show_default="none")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print counts, sizes, modes, captions, labels and bad files; save a preview grid."""
    from genimage.data.inspect import format_report, inspect_dataset
    from genimage.data.manifest import write_manifest

    report = inspect_dataset(
        target,
        grid_path=None if no_grid else grid,
        image_size=image_size,
        max_pixels=max_pixels,
        split=split,
        seed=seed,
        length=length,
        builtin_options=parse_key_values(opt, "--opt"),
    )
    if manifest is not None:
        write_manifest(report.dataset, manifest, fallback_info=report.source_info)
    if bad_files_report is not None:
        if report.kind != "image_folder":
            raise GenimageError("--bad-files-report applies only to image folders")
        report.dataset.write_bad_files_report(bad_files_report)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(format_report(report))
        if manifest is not None:
            typer.echo(f"manifest: {manifest}")
        if bad_files_report is not None:
            typer.echo(f"bad-file report: {bad_files_report}")
