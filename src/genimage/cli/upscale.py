"""The ``genimage edit --upscale F`` route that runs a trained ``superres`` model
(:mod:`genimage.editing.superres`); DDNM with a pixel-space generator stays in ``cli/edit.py``."""

from __future__ import annotations

from pathlib import Path

import typer

from genimage.errors import GenimageError


def choose_upscaler(model: str, family: str, upscale: int | None, upscaler: str | None) -> str | None:
    """The superres model ``edit`` should run, or ``None`` for DDNM with ``--model``.

    ``--upscaler ddnm``: DDNM; ``--upscaler MODEL``: that upscaler; none given: ``--model`` if it is
    an upscaler, else the bundled photo upscaler when ``--model`` cannot run DDNM (a latent model,
    such as the default ``shapes``) and its factor is ``upscale``."""
    if upscale is None:
        if upscaler is not None:
            raise GenimageError("--upscaler applies to super-resolution; give --upscale F as well")
        return None
    if upscaler == "ddnm":
        return None
    if upscaler is not None:
        return upscaler
    if family == "superres":
        return model
    from genimage.editing.superres import bundled_upscaler
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder

    if ModelConfig.load(resolve_model_folder(model)).autoencoder:
        return bundled_upscaler(upscale)
    return None


def run_upscaler(name: str, image: Path, upscale: int, *, strength, resample: int, prompt, label, negative,
                 guidance, guidance_interval, eta, lora, steps, sampler, schedule, seeds: list[int],
                 paths: list[Path], grid: Path | None, batch_size: int, device: str, watermark: bool) -> None:
    """Upscale ``image`` with the superres model ``name``, one output per seed, each saved with its record."""
    import time

    import torch

    from genimage.cli.sample import _progress
    from genimage.editing.superres import UpscaleOptions, load_upscaler, model_ref, run_upscale, upscale_canvas, \
        upscale_records
    from genimage.provenance.record import save_png

    unused = {"--prompt": prompt, "--label": label, "--negative": negative,
              "--guidance": guidance, "--guidance-interval": guidance_interval, "--eta": eta, "--lora": lora or None,
              "--resample": None if resample == 1 else resample}
    given = [k for k, v in unused.items() if v is not None]
    if given:
        one = len(given) == 1
        raise GenimageError(f"{', '.join(given)} {'does' if one else 'do'} not apply to the upscaler {name} (it is "
                            f"conditioned on the input only); drop {'it' if one else 'them'}, or pass --upscaler ddnm "
                            "to upscale with --model")
    loaded = load_upscaler(name, device)
    canvas = upscale_canvas(image, loaded, upscale, name=name, strength=strength)
    options = UpscaleOptions.defaults(loaded.config, steps, sampler, schedule)
    run = canvas.spec.steps_to_run(options.steps)
    typer.echo(f"upscale ({name}): {image} {canvas.describe()}; strength {canvas.spec.strength:g} ({run} of "
               f"{options.steps} {options.sampler} steps" + (", consistent with the input)" if options.consistent else ")"))
    bar, cb = _progress(run, len(seeds) * -(-canvas.rows // batch_size))
    t0 = time.perf_counter()
    images = run_upscale(loaded, canvas, seeds, options, batch_size, cb)
    bar.close()
    dt = time.perf_counter() - t0
    records = upscale_records(loaded, model_ref(loaded), canvas, seeds, options, watermark)
    written = [save_png(img, p, rec) for img, rec, p in zip(images, records, paths)]
    if grid is not None:
        from genimage.data.image_io import save_image_grid

        save_image_grid(torch.stack(images), grid)
        typer.echo(f"grid: {grid}")
    where = written[0] if len(written) == 1 else f"{written[0].parent}/ ({len(written)} images)"
    typer.echo(f"wrote {where} in {dt:.2f}s ({len(written) / dt:.1f} images/s)")
