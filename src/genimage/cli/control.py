"""``genimage control-map``: make a control image (edges, sketch, segmentation) for --control."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors
from genimage.errors import GenimageError


@handle_errors
def control_map(
    image: Annotated[Optional[Path], typer.Argument(help="An RGB image to take edges / a sketch from", show_default="none")] = None,
    kind: Annotated[str, typer.Option(help="edges | sketch | segmentation (segmentation: from --shapes-index only)")] = "edges",
    shapes_index: Annotated[Optional[int], typer.Option(help="Instead of IMAGE: item N of builtin:shapes; prints its caption and "
                                                             "writes the scene too (--scene-output)", show_default="none")] = None,
    split: Annotated[str, typer.Option(help="builtin:shapes split for --shapes-index: train | eval | all")] = "eval",
    scene_output: Annotated[Optional[Path], typer.Option(help="With --shapes-index: also write the scene PNG here", show_default="none")] = None,
    seed: Annotated[int, typer.Option(help="Seed of a sketch's wobble and gaps")] = 0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output PNG")] = Path("control.png"),
) -> None:
    """Write a control map PNG for `genimage generate --control` (white lines on black, or R/G/B object masks)."""
    import numpy as np
    from PIL import Image

    from genimage.editing.control_maps import CONTROL_KINDS, scene_control

    spec = CONTROL_KINDS.get(kind)
    if (image is None) == (shapes_index is None):
        raise GenimageError("give either an IMAGE or --shapes-index N")
    if image is not None:
        if spec.from_image is None:
            raise GenimageError(f"a {kind} map comes from the shapes renderer's exact masks: use --shapes-index N")
        try:
            with Image.open(image) as im:
                rgb = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise GenimageError(f"image not found: {image}") from None
        except Exception as exc:
            raise GenimageError(f"{image} is not a readable image: {exc}") from None
        out = spec.from_image(rgb, seed)
    else:
        from genimage.data.shapes import ShapesDataset

        if shapes_index < 0:
            raise GenimageError(f"--shapes-index must be >= 0, got {shapes_index}")
        ds = ShapesDataset(length=shapes_index + 1, split=split)
        scene, rgb = ds._item(shapes_index)
        out = scene_control(kind, scene, rgb, seed=seed, supersample=ds.supersample)
        typer.echo(f"caption: {scene.caption}")
        if scene_output is not None:
            Image.fromarray(rgb).save(scene_output)
            typer.echo(f"scene: {scene_output}")
    from genimage.utils.atomic import atomic_path

    pil = Image.fromarray(out[..., 0] if out.shape[2] == 1 else out)
    with atomic_path(output, what="control map") as tmp:
        pil.save(tmp, format="PNG")
    typer.echo(f"wrote {output} ({kind}, {out.shape[1]}x{out.shape[0]})")
