"""The ``genimage edit CONTENT --style STYLE`` route (:mod:`genimage.editing.style`)."""

from __future__ import annotations

from pathlib import Path

import typer

from genimage.errors import GenimageError


def run_style(image: Path, style: Path, *, strength: float, method: str, autoencoder: str | None, output: Path | None,
              num: int, out_dir: Path | None, watermark: bool, others: dict) -> None:
    """Transfer ``style``'s style onto ``image`` and save the result with its record.

    ``others``: the other ``edit`` options given (``--mask``, ``--prompt``, ...), refused by name
    because a style transfer does not use them."""
    import time

    from genimage.editing.style import DEFAULT_AUTOENCODER, build_style_edit, load_style_autoencoder, style_record
    from genimage.provenance.record import save_png

    given = [k for k, v in others.items() if v is not None]
    if given:
        raise GenimageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --style "
                            f"(a deterministic AdaIN transfer); drop {'it' if len(given) == 1 else 'them'}")
    if num != 1 or out_dir is not None:
        raise GenimageError("--style makes one deterministic image; drop -n / --out-dir")
    ae = None if method == "pixels" else load_style_autoencoder(autoencoder)
    edit = build_style_edit(image, style, ae.config.channels if ae is not None else 3, strength=strength,
                            method=method)
    t0 = time.perf_counter()
    out = edit.run(ae)
    dt = time.perf_counter() - t0
    ref = "" if ae is None else (DEFAULT_AUTOENCODER if autoencoder in (None, DEFAULT_AUTOENCODER)
                                 else str(ae.folder.resolve()))
    path = save_png(out, output or Path("edit.png"), style_record(edit, ae, ref, watermark))
    w, h = edit.content.shape[-1], edit.content.shape[-2]
    typer.echo(f"style: {image} {w}x{h} in the style of {style} {edit.style.shape[-1]}x{edit.style.shape[-2]}; "
               f"AdaIN ({method}) at strength {strength:g}" + (f" in {ref}" if ref else ""))
    typer.echo(f"wrote {path} in {dt:.2f}s")
