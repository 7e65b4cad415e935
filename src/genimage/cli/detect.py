"""``genimage detect``: is an image genimage's? Its embedded record, its invisible mark, and
the learned detector of its domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from genimage.cli.common import handle_errors


def inspect_image(path: Path) -> dict:
    """The record (if any), the watermark test and the learned detector's score of one image file."""
    import torch
    from PIL import Image

    from genimage.data.image_io import BadImageError, load_image, pil_to_tensor
    from genimage.errors import GenimageError
    from genimage.provenance.detector import detector_for, p_generated
    from genimage.provenance.record import read_record
    from genimage.provenance.watermark import DETECTION_Z, detection_scores, fits, key_id, p_value, watermark_key

    try:
        with Image.open(path) as im:  # the mark's pattern is per channel: read gray images as gray
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_image below
        gray = False
    try:
        img, _ = load_image(path, channels=1 if gray else 3)
    except (BadImageError, OSError) as e:
        raise GenimageError(f"cannot read {path}: {e}") from None
    x = pil_to_tensor(img)
    out: dict = {"image": str(path), "size": [x.shape[2], x.shape[1]], "channels": int(x.shape[0])}
    try:
        record = read_record(path)
        out["record"] = {"model": record.model, "genimage_version": record.genimage_version,
                         "watermark": record.watermark}
    except GenimageError:
        out["record"] = None
    det = detector_for(*x.shape)
    out["detector"] = None if det is None else {
        "name": det.name, "p_generated": round(float(p_generated(x[None], det)[0]), 4)}
    if not fits(*x.shape):
        out["watermark"] = {"verdict": "too small to carry a mark", "z": None, "p": None}
        return out
    z = float(detection_scores(x[None].to(torch.float32))[0])
    out["watermark"] = {"z": round(z, 2), "p": p_value(z), "key_id": key_id(watermark_key()),
                        "verdict": "marked" if z > DETECTION_Z else "not marked"}
    return out


@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image")] = False,
) -> None:
    """Tell whether images come from genimage: the generation record a PNG carries (easy to
    strip), the invisible watermark in the pixels (z-score of the keyed pattern; marked when
    p < 0.001; the key is $GENIMAGE_WATERMARK_KEY or the public default), and, for images of
    a built-in domain's shape (8x8 gray digits, 32x32 RGB shapes), a learned detector's
    probability that the image is generated."""
    for path in images:
        info = inspect_image(path)
        if as_json:
            typer.echo(json.dumps(info, sort_keys=True))
            continue
        wm = info["watermark"]
        mark = wm["verdict"] if wm["z"] is None else f"{wm['verdict']} (z = {wm['z']:.1f}, p = {wm['p']:.1e}, key {wm['key_id']})"
        rec = info["record"]
        record = f"record of {rec['model']} (genimage {rec['genimage_version']})" if rec else "no genimage record"
        det = info["detector"]
        learned = f"; detector {det['name']}: p(generated) = {det['p_generated']:.3f}" if det else ""
        typer.echo(f"{path}: watermark {mark}; {record}{learned}")
