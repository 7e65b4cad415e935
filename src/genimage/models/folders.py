"""Where a model is: bundled names, model folders, run and checkpoint folders, and
Stable-Diffusion-format sources, resolved to the folder that holds the weights.

Kept apart from :mod:`genimage.models.io` (which builds and loads models) so that the
autoencoder loader (:mod:`genimage.latent.autoencoder`) can resolve folders without
importing the model loader that imports it.
"""

from __future__ import annotations

from pathlib import Path

from genimage.errors import GenimageError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_folder(name_or_path: str | Path) -> Path:
    """Turn a bundled model name, a model folder, a checkpoint folder or a run folder into
    the folder that holds ``config.json`` and ``model.safetensors``. A Stable-Diffusion-format
    source (diffusers folder or single ``.safetensors`` file, :mod:`genimage.interop.sd_import`)
    is returned as it is."""
    p = Path(name_or_path)
    if p.is_dir():
        if (p / "config.json").is_file():
            return p
        if (p / "model_index.json").is_file():  # a diffusers Stable Diffusion folder (genimage.interop)
            from genimage.interop.sd_import import check_pipeline_folder

            check_pipeline_folder(p)
            return p
        from genimage.training.checkpoint import find_latest_checkpoint

        ckpt = find_latest_checkpoint(p / "checkpoints") if (p / "checkpoints").is_dir() else None
        if ckpt is not None:
            return ckpt
        raise GenimageError(f"{p} holds neither a model (config.json) nor training checkpoints")
    if p.suffix in {".pt", ".pth", ".ckpt", ".bin", ".safetensors"} and p.is_file():
        from genimage.interop.sd_import import check_single_file  # an SD single-file checkpoint, or a clear error

        return check_single_file(p)
    bundled = BUNDLED_DIR / str(name_or_path)
    if "/" not in str(name_or_path) and (bundled / "config.json").is_file():
        return bundled
    names = ", ".join(bundled_models()) or "none installed"
    raise GenimageError(f"model {str(name_or_path)!r} not found: give a model/run folder or a bundled name ({names})")
