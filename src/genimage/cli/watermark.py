"""``genimage watermark embed|detect``: genimage's invisible marks on images made elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors

app = typer.Typer(help="Invisible marks (keyed pattern, DWT-DCT) on any image.", no_args_is_help=True)
METHODS = ("both", "pattern", "dwtdct")


def _message(text: str | None, hex_message: str | None) -> bytes | None:
    from genimage.provenance.dwtdct import parse_message

    return parse_message(text, hex_message) if text is not None or hex_message is not None else None


@app.command("embed")
@handle_errors
def embed(
    image: Annotated[Path, typer.Argument(help="Image to mark")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Marked copy (.png keeps the mark exactly; .jpg/.webp weaken it)")],
    method: Annotated[str, typer.Option(help="both | pattern (keyed +-1 pattern) | dwtdct (invisible-watermark compatible)")] = "both",
    message: Annotated[Optional[str], typer.Option(help="DWT-DCT message as text (default: 4 bytes of the key's hash)")] = None,
    message_hex: Annotated[Optional[str], typer.Option(help="... or as hex", show_default="none")] = None,
    strength: Annotated[int, typer.Option(help="Pattern strength in 8-bit levels", min=1, max=16)] = 2,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality", min=1, max=100)] = 95,
) -> None:
    """Mark an image. The pattern needs 3,072 pixel values; DWT-DCT an RGB image with one 8x8
    block per message bit (invisible-watermark's own decoder needs 256x256 pixels). The key is
    $GENIMAGE_WATERMARK_KEY or the public default."""
    from genimage.data.types import image_from_uint8, image_to_uint8
    from genimage.errors import GenimageError
    from genimage.provenance import dwtdct
    from genimage.provenance import watermark as wm
    from genimage.provenance.inspect import load_for_marks
    from genimage.utils.atomic import atomic_path

    if method not in METHODS:
        raise GenimageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    suffix = output.suffix.lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(suffix)
    if fmt is None:
        raise GenimageError(f"--output must end in .png, .jpg or .webp, got {output}")
    x = load_for_marks(image)
    msg = _message(message, message_hex) or dwtdct.default_message(wm.watermark_key())
    done = []
    if method in ("both", "pattern"):
        if not wm.fits(*x.shape):
            raise GenimageError(f"{image} is too small for the pattern mark (needs {wm.MIN_VALUES} pixel values)")
        x = wm.embed(x, strength=strength)
        done.append(f"pattern (key {wm.key_id(wm.watermark_key())}, {strength} levels)")
    if method in ("both", "dwtdct"):
        if x.shape[0] != 3:
            raise GenimageError(f"{image} is gray; the DWT-DCT mark needs an RGB image")
        x = image_from_uint8(dwtdct.embed(image_to_uint8(x), msg))
        done.append(f"DWT-DCT (message {msg.hex()})")
    from genimage.data.image_io import tensor_to_pil

    pil = tensor_to_pil(x)
    with atomic_path(output) as tmp:
        kw = {"quality": quality} if fmt != "PNG" else {}
        pil.save(tmp, format=fmt, **kw)
    typer.echo(f"wrote {output}: {' + '.join(done)}")


@app.command("detect")
@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files")],
    message: Annotated[Optional[str], typer.Option(help="DWT-DCT message to look for, as text (default: the key's)")] = None,
    message_hex: Annotated[Optional[str], typer.Option(help="... or as hex", show_default="none")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image")] = False,
) -> None:
    """Look for both marks (found when p < 0.001). `genimage detect` reports these together
    with the manifest, the record and the learned detector."""
    from genimage.cli.detect import mark_line
    from genimage.provenance.inspect import load_for_marks
    from genimage.provenance.marks import find_marks

    msg = _message(message, message_hex)
    for path in images:
        marks = find_marks(load_for_marks(path), message=msg)
        if as_json:
            typer.echo(json.dumps({"image": str(path), **marks}, sort_keys=True))
        else:
            typer.echo(f"{path}: " + "; ".join(mark_line(n, marks[k]) for n, k in (("pattern", "pattern"), ("DWT-DCT", "dwtdct"))))
