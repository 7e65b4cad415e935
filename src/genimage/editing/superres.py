"""Super-resolution of an input of any size with a trained ``superres`` model (``--upscale F``).

The model (:mod:`genimage.families.superres`, SR3-style: Saharia et al. 2021) upscales a window of
``s = S / F`` low-resolution pixels to ``S``. An input of any ``W x H`` is cut into overlapping
``s x s`` tiles and the results are blended by :class:`~genimage.editing.canvas.CanvasEdit` (its
``tiles`` fit, the same tiler and linear-ramp blend as DDNM's ``--upscale``), so the output is
exactly ``F W x F H`` for any size and aspect; an input smaller than a tile is padded by
replicating its border and the padding is cropped off again.

Tile ``k`` of the output of seed ``n`` draws its noise from ``tile_seed(n, k)``; the record keeps
the seed, the sampler settings, the model's sha256 and the input pixels' sha256 (``edit`` entry
with ``method: "superres"``), so :func:`replay_superres` rebuilds the same tiles and pixels.

Optionally (``consistent=True``) every step's clean estimate is projected so that its
``F x F`` block means equal the input (DDNM's range-null-space rule, Wang et al. 2023, Eq. 13;
:class:`~genimage.editing.known_region.LowResolutionDenoiser`) — the conditional model then
keeps the input's content exactly and only adds detail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import torch

from genimage.editing.canvas import CanvasEdit, build_canvas_edit, canvas_from_record
from genimage.errors import GenimageError
from genimage.families.io import LoadedGenerator

#: The bundled photo upscaler (``genimage/weights/photos-x4``), used by ``genimage edit --upscale 4``
#: when ``--model`` is not a pixel-space model.
BUNDLED_UPSCALER = "photos-x4"
SUPERRES = "superres"


def is_superres(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a ``superres``-family model."""
    from genimage.models.config import ModelConfig
    from genimage.models.io import resolve_model_folder

    return ModelConfig.load(resolve_model_folder(name_or_path)).family == SUPERRES


def bundled_upscaler(factor: int) -> str | None:
    """The bundled upscaler's name if it is installed and upscales by ``factor``, else ``None``."""
    from genimage.models.config import ModelConfig
    from genimage.models.io import BUNDLED_DIR

    folder = BUNDLED_DIR / BUNDLED_UPSCALER
    if not (folder / "config.json").is_file():
        return None
    return BUNDLED_UPSCALER if ModelConfig.load(folder).family_config.get("factor") == factor else None


def load_upscaler(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load a ``superres`` model (bundled name, model, run or checkpoint folder), or a clear error."""
    from genimage.families.io import load_generator
    from genimage.utils.device import resolve_device

    loaded = load_generator(name_or_path, device=resolve_device(device))
    if loaded.config.family != SUPERRES:
        raise GenimageError(f"{name_or_path} is a {loaded.config.family} model, not an upscaler "
                            "(genimage train --family superres)")
    return loaded


def upscale_canvas(source: str | Path | bytes, loaded: LoadedGenerator, factor: int,
                   overlap: int | None = None, name: str | None = None, strength: float | None = None) -> CanvasEdit:
    """The tiling of an input file (or its bytes) of any size for ``loaded``'s window.

    Args:
        source: The input image (any size, aspect and colour mode: read as the model's channels).
        loaded: The upscaler.
        factor: The requested factor; must be the model's.
        overlap: Tile overlap in low-resolution pixels (default: a quarter of the tile side).
        name: How error messages name the model (default: its folder's name).
        strength: Fraction of the schedule run, from the bicubic image noised to its start
            (:meth:`~genimage.families.superres.SuperResModel.upscale`); kept in the record.
            Default: the model's ``family_config["strength"]``, else
            :data:`~genimage.families.superres.DEFAULT_STRENGTH`.
    """
    from genimage.families.superres import DEFAULT_STRENGTH

    cfg = loaded.config
    if strength is None:
        strength = float(cfg.family_config.get("strength", DEFAULT_STRENGTH))
    if not 0 < float(strength) <= 1:
        raise GenimageError(f"--strength must be in (0, 1], got {strength}")
    own = int(cfg.family_config["factor"])
    if factor != own:
        raise GenimageError(f"--upscale {factor}: the upscaler {name or loaded.folder.name} is trained for x{own}; "
                            f"use --upscale {own} (or another --upscaler)")
    return build_canvas_edit(source, cfg.image_size, cfg.channels, upscale=factor, overlap=overlap, strength=strength)


@dataclasses.dataclass
class UpscaleOptions:
    """Sampling settings of an upscale (defaults: the model's).

    Args:
        steps: Sampler steps.
        sampler: Sampler name (any of :data:`genimage.samplers.SAMPLERS`).
        schedule: Timestep schedule name.
        consistent: Project every clean estimate onto the input's block means (module docstring).
    """

    steps: int
    sampler: str
    schedule: str
    consistent: bool = False

    @classmethod
    def defaults(cls, config, steps: int | None = None, sampler: str | None = None, schedule: str | None = None,
                 consistent: bool | None = None) -> "UpscaleOptions":
        """The model's defaults (``consistent``: ``family_config["consistent"]``, else
        :data:`~genimage.families.superres.DEFAULT_CONSISTENT`) with the given overrides."""
        from genimage.families.superres import DEFAULT_CONSISTENT
        from genimage.samplers import SAMPLERS
        from genimage.samplers.timesteps import SCHEDULES

        if consistent is None:
            consistent = config.family_config.get("consistent", DEFAULT_CONSISTENT)
        out = cls(int(steps or config.steps), sampler or config.sampler, schedule or config.schedule, bool(consistent))
        SAMPLERS.get(out.sampler)
        SCHEDULES.get(out.schedule)
        if out.steps < 1:
            raise GenimageError(f"--steps must be at least 1, got {out.steps}")
        return out


def run_upscale(loaded: LoadedGenerator, canvas: CanvasEdit, seeds: Sequence[int], options: UpscaleOptions,
                batch_size: int = 64, callback: Callable[[dict], None] | None = None) -> list[torch.Tensor]:
    """One ``(C, F H, F W)`` output per seed: every tile super-resolved, then blended."""
    if canvas.fit != "tiles":
        raise GenimageError("run_upscale needs an --upscale canvas (upscale_canvas)")
    from genimage.samplers.noise import generators_for_seeds

    model = loaded.model
    low = canvas.spec.low
    k = canvas.rows
    outputs = []
    for seed in seeds:
        gens = generators_for_seeds(canvas.seeds(seed))
        rows = []
        for start in range(0, k, batch_size):
            sl = slice(start, start + batch_size)
            rows.append(model.upscale(low[sl], gens[sl], steps=options.steps, sampler=options.sampler,
                                      schedule=options.schedule, consistent=options.consistent,
                                      strength=float(canvas.spec.strength), callback=callback))
        outputs.append(canvas.assemble(torch.cat(rows)))
    return outputs


def upscale_records(loaded: LoadedGenerator, model_ref: str, canvas: CanvasEdit, seeds: Sequence[int],
                    options: UpscaleOptions, watermark: bool = True):
    """The generation record of each output (replayed by :func:`replay_superres`)."""
    from genimage import __version__
    from genimage.provenance.record import GenerationRecord
    from genimage.provenance.watermark import record_entry

    cfg = loaded.config
    w, h = canvas.out_size
    edit = {**canvas.record(), "method": SUPERRES, "consistent": bool(options.consistent)}
    device = loaded.model.device.type
    return [GenerationRecord(model=model_ref, model_sha256=loaded.weights_sha256, objective=cfg.objective,
                             path=cfg.path, sampler=options.sampler, schedule=options.schedule, steps=options.steps,
                             guidance=1.0, seed=int(seed), width=w, height=h, device=device, edit=dict(edit),
                             watermark=record_entry(cfg.channels, h, w, watermark), genimage_version=__version__)
            for seed in seeds]


def model_ref(loaded: LoadedGenerator) -> str:
    """How a record names the model: its bundled name, else its folder."""
    from genimage.models.io import BUNDLED_DIR

    folder = loaded.folder.resolve()
    return folder.name if folder.parent == BUNDLED_DIR.resolve() else str(folder)


def is_superres_record(record) -> bool:
    """Whether a generation record was made by :func:`run_upscale`."""
    return (record.edit or {}).get("method") == SUPERRES


def replay_superres(record, image_path: str | Path, model: str | Path | None = None,
                    device: str | torch.device | None = None, init: str | Path | None = None):
    """Regenerate an upscaled PNG from its record and its input file; a :class:`~genimage.provenance.replay_check.ReplayResult`."""
    from genimage.provenance.replay_check import compare_with_png, replay_device

    loaded = load_upscaler(model or record.model, device=replay_device(record, image_path, device))
    cfg = loaded.config
    canvas = canvas_from_record(record.edit, init, None, cfg.image_size, cfg.channels)
    options = UpscaleOptions(int(record.steps), record.sampler, record.schedule, bool(record.edit["consistent"]))
    image = run_upscale(loaded, canvas, [record.seed], options)[0]
    return compare_with_png(image, image_path, record, loaded.weights_sha256 == record.model_sha256)
