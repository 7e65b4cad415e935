"""``genimage detect``: is an image genimage's? Its invisible marks, its signed manifest, its
embedded record, and the learned detector of its domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genimage.cli.common import handle_errors


def mark_line(name: str, m: dict) -> str:
    """One line about one mark of :func:`genimage.provenance.marks.find_marks`."""
    if m["found"] is None:
        return f"{name}: cannot be carried ({m['how'].split(': ', 1)[-1]})"
    verdict = "found" if m["found"] else "not found"
    extra = f", bits {m['bit_accuracy']:.0%} of {m['message']}, decoded {m['decoded']}" if "bit_accuracy" in m else ""
    key = f", key {m['key_id']}" if "key_id" in m else ""
    return f"{name}: {verdict} (z = {m['z']:.1f}, p = {m['p']:.1e}{extra}{key}; {m['how'].split(';')[0]})"


def format_report(info: dict) -> str:
    """The text ``genimage detect`` prints for one :func:`genimage.provenance.inspect.inspect_file` report."""
    lines = [f"{info['image']} ({info['size'][0]}x{info['size'][1]}, {info['channels']} channel{'s' if info['channels'] > 1 else ''})"]
    lines.append("  " + mark_line("pattern mark", info["marks"]["pattern"]))
    lines.append("  " + mark_line("DWT-DCT mark", info["marks"]["dwtdct"]))
    man = info["manifest"]
    lines.append(f"  manifest: {man['status']}" + (f" (key {man['key_id']})" if man["key_id"] else "") + f": {man['reason']}")
    rec = info["record"]
    lines.append(f"  record: {rec['model']} (genimage {rec['genimage_version']})" if rec else "  record: none")
    det = info["detector"]
    lines.append(f"  detector {det['name']}: p(generated) = {det['p_generated']:.3f}" if det
                 else "  detector: none for this image shape")
    return "\n".join(lines)


@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, WebP, ...)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image, one per line")] = False,
    trusted: Annotated[Optional[Path], typer.Option("--trusted", help="Folder of trusted *.pub keys for the manifest", show_default="$GENIMAGE_TRUSTED_KEYS or ~/.config/genimage/keys/trusted")] = None,
    message: Annotated[Optional[str], typer.Option("--message", help="DWT-DCT message to look for, as text (default: the key's)")] = None,
    message_hex: Annotated[Optional[str], typer.Option("--message-hex", help="... or as hex", show_default="none")] = None,
) -> None:
    """Tell whether images come from genimage. Per image: the invisible marks (the keyed
    pattern's z-score; the DWT-DCT message's block agreement, bit accuracy and decoded bytes;
    a mark is found when p < 0.001; the key is $GENIMAGE_WATERMARK_KEY or the public default),
    whether its signed manifest verifies (as `genimage verify`), the generation record a PNG
    carries (easy to strip or forge), and for images of a built-in domain's shape (8x8 gray
    digits, 32x32 RGB shapes) a learned detector's probability that the image is generated."""
    from genimage.provenance.inspect import inspect_file
    from genimage.provenance.dwtdct import parse_message

    msg = parse_message(message, message_hex) if message is not None or message_hex is not None else None
    for path in images:
        info = inspect_file(path, trusted=trusted, message=msg)
        typer.echo(json.dumps(info, sort_keys=True) if as_json else format_report(info))
