"""``genimage verify`` and ``genimage sign``: signed provenance manifests (PNG, JPEG, WebP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors

TRUSTED_HELP = "Folder of trusted *.pub keys; default $GENIMAGE_TRUSTED_KEYS or <keys dir>/trusted"


@handle_errors
def verify(
    image: Annotated[Path, typer.Argument(help="PNG, JPEG or WebP file")],
    trusted: Annotated[Optional[Path], typer.Option("--trusted", help=TRUSTED_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object")] = False,
) -> None:
    """Check an image's signed manifest. Prints exactly one of: signed-and-intact (exit 0; with
    the signer's key id), tampered (exit 1: pixels or manifest changed after signing),
    signed-by-unknown-key (exit 3: unchanged, but the key is not trusted), absent (exit 4: no
    manifest). Exit 2 is a usage error (missing or unreadable file)."""
    from genimage.provenance.manifest import verify_file

    result = verify_file(image, trusted)
    if as_json:
        typer.echo(json.dumps({"image": str(image), **result.to_dict()}, sort_keys=True))
    else:
        typer.echo(f"{image}: {result.status}" + (f" (key {result.key_id})" if result.key_id else "") + f": {result.reason}")
    raise typer.Exit(result.exit_code)


@handle_errors
def sign(
    image: Annotated[Path, typer.Argument(help="Image to sign (its genimage record, if any, goes into the manifest)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Signed copy: .png, .jpg/.jpeg or .webp")],
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality 1-100 (WebP 100 = lossless)", min=1, max=100)] = 95,
    key: Annotated[Optional[Path], typer.Option("--key", help="Private key; default $GENIMAGE_SIGNING_KEY or <keys dir>/signing.key")] = None,
) -> None:
    """Write a copy of IMAGE in the output's format with a signed manifest naming its pixels (a
    PNG keeps its generation record). Use it to publish generated images as JPEG or WebP."""
    from PIL import Image

    from genimage.errors import GenimageError
    from genimage.provenance.keys import configured_signer, load_signer
    from genimage.provenance.manifest import encode_signed, format_for
    from genimage.provenance.record import PNG_KEY
    from genimage.utils.atomic import atomic_path

    fmt = format_for(output)
    signer = load_signer(key) if key else configured_signer()
    if signer is None:
        raise GenimageError("no signing key configured: run `genimage keys new`, or pass --key / set GENIMAGE_SIGNING_KEY")
    if not image.is_file():
        raise GenimageError(f"image not found: {image}")
    try:
        with Image.open(image) as im:
            im.load()
            text = dict(getattr(im, "text", {}) or {})
            pil = im.copy() if im.mode in ("L", "RGB", "RGBA") else im.convert("RGBA" if "A" in im.mode else "RGB")
    except Exception as exc:  # noqa: BLE001
        raise GenimageError(f"{image} is not a readable image: {exc}") from None
    record = None
    if PNG_KEY in text:
        try:
            record = json.loads(text[PNG_KEY])
        except ValueError:
            raise GenimageError(f"{image}: its genimage record is damaged") from None
    keep = {PNG_KEY: text[PNG_KEY]} if record is not None and fmt == "PNG" else {}
    data = encode_signed(pil, fmt, record, signer, quality=quality, png_text=keep)
    with atomic_path(output) as tmp:
        Path(tmp).write_bytes(data)
    typer.echo(f"wrote {output} ({fmt}, signed by key {signer.key_id})")
