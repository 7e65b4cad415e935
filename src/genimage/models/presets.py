"""Named backbone sizes (``--preset``): ``tiny`` for tests, ``small`` for real CPU runs."""

from __future__ import annotations

from typing import Any

from genimage.errors import GenimageError

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "dit": {
        "tiny": {"hidden": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0},
        "small": {"hidden": 256, "depth": 6, "heads": 4},
        "base": {"hidden": 384, "depth": 12, "heads": 6},
    },
    "unet": {
        "tiny": {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8},
        "small": {"block_out_channels": [64, 128, 128], "layers_per_block": 1, "norm_num_groups": 32},
        "base": {"block_out_channels": [128, 256, 256], "layers_per_block": 2, "norm_num_groups": 32},
    },
}


def default_patch_size(image_size: int) -> int:
    """Patch 2 up to 16 px, 4 above (64 image tokens at 32 px)."""
    return 2 if image_size <= 16 else 4


def backbone_config(backbone: str, preset: str, *, image_size: int, channels: int, num_classes: int = 0,
                    text_dim: int = 0, max_text_len: int = 32, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The backbone config dict for a preset, the data geometry and conditioning, plus overrides."""
    if backbone not in PRESETS:
        raise GenimageError(f"unknown backbone {backbone!r}; choose one of: {', '.join(sorted(PRESETS))}")
    if preset not in PRESETS[backbone]:
        raise GenimageError(f"unknown preset {preset!r} for {backbone}; choose one of: {', '.join(PRESETS[backbone])}")
    cfg: dict[str, Any] = {"image_size": image_size, "in_channels": channels, "num_classes": num_classes,
                           "text_dim": text_dim, "max_text_len": max_text_len, **PRESETS[backbone][preset]}
    if backbone == "dit":
        cfg["patch_size"] = default_patch_size(image_size)
    cfg.update(overrides or {})
    return cfg
