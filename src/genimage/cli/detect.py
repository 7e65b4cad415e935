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


def noise_line(m: dict) -> str:
    """One line about the noise-space mark (:func:`genimage.provenance.noise_calibration.calibrated_detect`)."""
    if m["found"] is None:
        return f"noise mark: cannot be read ({m['how']})"
    verdict = "found" if m["found"] else "not found"
    label = f", label {m['label']}" if "label" in m else ""
    h = m.get("hypothesis") or {}
    moved = [f"rotated {h['rotation']:g} deg" if h.get("rotation") else "", f"zoomed x{h['zoom']:g}" if h.get("zoom", 1) != 1 else "",
             f"read low-passed ({h['blur']:g} px)" if h.get("blur") else ""]
    moved_text = f", best read as {', '.join(t for t in moved if t)}" if any(moved) else ""
    return (f"noise mark: {verdict} (z = {m['z']:.1f} vs threshold {m['threshold']:.1f}, p ~ {m['p']:.3f}, sign agreement "
            f"{m['agreement']:.0%}{label}{moved_text}, key {m['key_id']}; inverted through {m['model']})")


def format_report(info: dict) -> str:
    """The text ``genimage detect`` prints for one :func:`genimage.provenance.inspect.inspect_file` report."""
    lines = [f"{info['image']} ({info['size'][0]}x{info['size'][1]}, {info['channels']} channel{'s' if info['channels'] > 1 else ''})"]
    lines.append("  " + mark_line("pattern mark", info["marks"]["pattern"]))
    lines.append("  " + mark_line("DWT-DCT mark", info["marks"]["dwtdct"]))
    if "noise" in info["marks"]:
        lines.append("  " + noise_line(info["marks"]["noise"]))
    man = info["manifest"]
    lines.append(f"  manifest: {man['status']}" + (f" (key {man['key_id']})" if man["key_id"] else "") + f": {man['reason']}")
    rec = info["record"]
    lines.append(f"  record: {rec['model']} (genimage {rec['genimage_version']})" if rec else "  record: none")
    det = info["detector"]
    lines.append(f"  detector {det['name']}: p(generated) = {det['p_generated']:.3f} (trained on {det['trained_on']} "
                 "only; chosen by image shape, other content is outside what it knows)" if det
                 else "  detector: none for this image shape")
    return "\n".join(lines)


@handle_errors
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, WebP, ...)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image, one per line")] = False,
    trusted: Annotated[Optional[Path], typer.Option("--trusted", help="Folder of trusted *.pub keys for the manifest", show_default="$GENIMAGE_TRUSTED_KEYS or ~/.config/genimage/keys/trusted")] = None,
    message: Annotated[Optional[str], typer.Option("--message", help="DWT-DCT message to look for, as text (default: the key's)")] = None,
    message_hex: Annotated[Optional[str], typer.Option("--message-hex", help="... or as hex", show_default="none")] = None,
    invert: Annotated[Optional[str], typer.Option(
        help="Also look for the noise-space mark (on by default in photos-pixel's images; `generate|sample "
             "--noise-mark` elsewhere): invert this model's sampler from each image and score the model's keyed sign "
             "patterns (bundled name or folder; images of its size and channels)", show_default="none")] = None,
    calibrate: Annotated[int, typer.Option(help="With --invert: unmarked samples of the model that set the 1% "
                                                "false-positive threshold")] = 200,
    search: Annotated[bool, typer.Option(
        "--search/--no-search", help="With --invert: also read the noise as if the image had been rotated (up to 30 "
                                     "deg), centre-cropped (down to 46% of the area kept) or blurred / compressed, and "
                                     "keep the best reading; --no-search reads the image only as it is")] = True,
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
    infos = [inspect_file(path, trusted=trusted, message=msg) for path in images]
    if invert is not None:
        _noise_marks(infos, images, invert, calibrate, search)
    for info in infos:
        typer.echo(json.dumps(info, sort_keys=True) if as_json else format_report(info))


def _noise_marks(infos: list[dict], images: list[Path], model: str, calibrate: int, search: bool = True) -> None:
    """Add ``marks["noise"]`` to each report: one calibration and one batched inversion for all images."""
    import torch

    from genimage.pipeline import Pipeline
    from genimage.provenance.inspect import load_for_marks
    from genimage.provenance.noise_calibration import calibrated_detect

    pipe = Pipeline.from_pretrained(model)
    c, s = pipe.config.channels, pipe.config.image_size
    fits = [i for i, info in enumerate(infos) if info["channels"] == c and info["size"] == [s, s]]
    for i, info in enumerate(infos):
        if i not in fits:
            info["marks"]["noise"] = {"found": None, "model": pipe.model_ref,
                                      "how": f"{pipe.model_ref} makes {s}x{s} images with {c} channel(s); this one is "
                                             f"{info['size'][0]}x{info['size'][1]} with {info['channels']}"}
    if fits:
        x = torch.stack([load_for_marks(images[i]) for i in fits])
        for i, m in zip(fits, calibrated_detect(pipe, x, calibrate=calibrate, search=search)):
            infos[i]["marks"]["noise"] = {**m, "model": pipe.model_ref}
