"""Is the noise-space mark in these images? A detection threshold calibrated on the model's own
unmarked samples (:mod:`genimage.provenance.noise_mark` holds the mark and its inversion).

The unmarked scores of an inverted model are not standard normal: its inverted noise has a
structure of its own that correlates with any fixed sign pattern, and the maximum over many
patterns lifts them further (BENCHMARKS.md, "Noise-space mark"). So the threshold is measured,
not assumed: the 99th percentile of the scores of unmarked samples of the same model. Those
scores depend only on the model's weights, the key, the message, the patterns and the sampling
settings, so they are computed once and cached on disk (``<genimage cache>/noise_calibration``,
the cache root of :mod:`genimage.latent.cache`): a second ``genimage detect --invert`` of the same
model inverts only its own images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from genimage import __version__
from genimage.errors import GenimageError
from genimage.generation import generate
from genimage.provenance.dwtdct import default_message
from genimage.provenance.noise_mark import DETECTION_Z, METHOD, default_patterns, detect
from genimage.provenance.noise_sync import hypotheses
from genimage.provenance.watermark import key_id, watermark_key


def calibrated_detect(pipe, images: torch.Tensor, calibrate: int = 200, key: str | None = None,
                      message: bytes | None = None, patterns: int | None = None, seed: int = 10**9,
                      search: bool = True) -> list[dict]:
    """Per image of ``images`` ``(B, C, H, W)``: is the noise mark there? The unmarked scores of
    an inverted model are not standard normal (its inverted noise correlates with any fixed sign
    pattern, BENCHMARKS.md), so the threshold is the 99th percentile of the scores of
    ``calibrate`` unmarked 8-bit samples of the same model (seeds ``seed``, ``seed + 1``, ...):
    a 1% false-positive rate, estimated. Class-conditional models are inverted by label search.

    ``search`` (default): score the linear correlation of the inverted noise and keep the best
    of the rotation, centred-crop and low-pass hypotheses of
    :func:`genimage.provenance.noise_sync.hypotheses`, so a rotated, cropped, blurred or
    compressed image is still read (the calibration searches the same way, so its threshold
    pays for the search). ``False``: the sign agreement of the image as it is.

    Returns one JSON-ready dict per image: ``found``, ``z``, ``threshold``, ``p`` (the share of
    calibration scores at or above ``z``, ``(1 + k) / (1 + calibrate)``), ``agreement``,
    ``pattern``, ``label`` (label search only), ``hypothesis`` (``search`` only: the rotation,
    zoom and blur that read it best) and ``how``. ``patterns`` defaults to the model's
    (:func:`default_patterns`).
    """
    if calibrate < 20:
        raise GenimageError(f"calibrate needs at least 20 unmarked samples for a 1% threshold, got {calibrate}")
    patterns = default_patterns(pipe.config) if patterns is None else patterns
    key = key or watermark_key()
    message = message if message is not None else default_message(key)
    seeds = list(range(seed, seed + calibrate))
    labels = [i % pipe.config.num_classes for i in range(calibrate)] if pipe.conditioner.uses_labels else None
    prompts = [""] * calibrate if pipe.conditioner.uses_text else None
    options = pipe.options(bf16=False)
    grid = hypotheses() if search else None
    reading = {"soft": search, "sync": [h.as_dict() for h in grid] if grid else None}
    identity = {"weights": pipe.loaded.weights_sha256, "key": hashlib.sha256(key.encode("utf-8")).hexdigest(),
                "message": message.hex(), "patterns": patterns, "calibrate": calibrate, "seed": seed,
                "sampler": [options.sampler, options.schedule, options.steps, options.guidance],
                "loras": pipe.loras, "version": __version__, "reading": reading}
    path = calibration_cache_dir() / (hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
                                      + ".json")
    null_z = _read_cached(path)
    if null_z is None:
        null = generate(pipe.loaded.denoiser, pipe.config, pipe.conditioner, seeds=seeds, labels=labels,
                        prompts=prompts, options=options)
        null = ((null.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # as saved
        null_z = detect(pipe, null, key, message, label_search=labels is not None, patterns=patterns,
                        sync=grid, soft=search)["z"]
        _write_cached(path, null_z)
    thr = max(float(torch.quantile(null_z, 0.99)), DETECTION_Z)
    res = detect(pipe, images, key, message, label_search=labels is not None, patterns=patterns, sync=grid, soft=search)
    reading_text = (f"correlation of the sampler's inverted noise with the keyed pattern, best of {len(grid)} rotation / "
                    "centred-crop / low-pass hypotheses" if search else "sign agreement of the sampler's inverted "
                    "noise with the keyed pattern")
    how = (f"{METHOD}: {reading_text}{' (label search)' if labels is not None else ''}; threshold = 99th percentile "
           f"of {calibrate} unmarked samples")
    out = []
    for i in range(len(images)):
        z = float(res["z"][i])
        entry = {"found": z > thr, "z": round(z, 2), "threshold": round(thr, 2),
                 "p": (1 + int((null_z >= z).sum())) / (1 + calibrate), "agreement": round(float(res["agreement"][i]), 4),
                 "pattern": int(res["pattern"][i]), "key_id": key_id(key), "how": how}
        if "label" in res:
            entry["label"] = int(res["label"][i])
        if "hypothesis" in res:
            entry["hypothesis"] = res["hypothesis"][i].as_dict()
        out.append(entry)
    return out


def calibration_cache_dir() -> Path:
    """``<genimage cache root>/noise_calibration`` (``$GENIMAGE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/genimage``, else ``~/.cache/genimage``)."""
    from genimage.latent.cache import default_cache_dir

    return default_cache_dir().parent / "noise_calibration"


def _read_cached(path: Path) -> torch.Tensor | None:
    """The cached unmarked scores, or ``None`` when absent or unreadable (then they are recomputed)."""
    try:
        return torch.tensor(json.loads(path.read_text(encoding="utf-8"))["null_z"], dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cached(path: Path, null_z: torch.Tensor) -> None:
    """Write the scores atomically; a cache that cannot be written is skipped, not an error."""
    from genimage.utils.weights import write_json_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic({"null_z": [float(v) for v in null_z]}, path)
    except (OSError, GenimageError):
        pass
