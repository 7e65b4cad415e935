"""Is the noise-space mark in these images? A detection threshold calibrated on the model's own
unmarked samples (:mod:`genimage.provenance.noise_mark` holds the mark and its inversion).

The unmarked scores of an inverted model are not standard normal: its inverted noise has a
structure of its own that correlates with any fixed sign pattern, and the maximum over many
patterns lifts them further (BENCHMARKS.md, "Noise-space mark"). So the threshold is measured,
not assumed: the 99th percentile of the scores of unmarked samples of the same model.
"""

from __future__ import annotations

import torch

from genimage.errors import GenimageError
from genimage.generation import generate
from genimage.provenance.dwtdct import default_message
from genimage.provenance.noise_mark import DETECTION_Z, METHOD, default_patterns, detect
from genimage.provenance.watermark import key_id, watermark_key


def calibrated_detect(pipe, images: torch.Tensor, calibrate: int = 200, key: str | None = None,
                      message: bytes | None = None, patterns: int | None = None, seed: int = 10**9) -> list[dict]:
    """Per image of ``images`` ``(B, C, H, W)``: is the noise mark there? The unmarked scores of
    an inverted model are not standard normal (its inverted noise correlates with any fixed sign
    pattern, BENCHMARKS.md), so the threshold is the 99th percentile of the scores of
    ``calibrate`` unmarked 8-bit samples of the same model (seeds ``seed``, ``seed + 1``, ...):
    a 1% false-positive rate, estimated. Class-conditional models are inverted by label search.

    Returns one JSON-ready dict per image: ``found``, ``z``, ``threshold``, ``p`` (the share of
    calibration scores at or above ``z``, ``(1 + k) / (1 + calibrate)``), ``agreement``,
    ``pattern``, ``label`` (label search only) and ``how``. ``patterns`` defaults to the
    model's (:func:`default_patterns`).
    """
    if calibrate < 20:
        raise GenimageError(f"calibrate needs at least 20 unmarked samples for a 1% threshold, got {calibrate}")
    patterns = default_patterns(pipe.config) if patterns is None else patterns
    key = key or watermark_key()
    message = message if message is not None else default_message(key)
    search = bool(pipe.conditioner.uses_labels)
    seeds = list(range(seed, seed + calibrate))
    labels = [i % pipe.config.num_classes for i in range(calibrate)] if search else None
    prompts = [""] * calibrate if pipe.conditioner.uses_text else None
    null = generate(pipe.loaded.denoiser, pipe.config, pipe.conditioner, seeds=seeds, labels=labels, prompts=prompts,
                    options=pipe.options(bf16=False))
    null = ((null.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # as saved
    null_z = detect(pipe, null, key, message, label_search=search, patterns=patterns)["z"]
    thr = max(float(torch.quantile(null_z, 0.99)), DETECTION_Z)
    res = detect(pipe, images, key, message, label_search=search, patterns=patterns)
    how = (f"{METHOD}: sign agreement of the sampler's inverted noise with the keyed pattern"
           f"{' (label search)' if search else ''}; threshold = 99th percentile of {calibrate} unmarked samples")
    out = []
    for i in range(len(images)):
        z = float(res["z"][i])
        entry = {"found": z > thr, "z": round(z, 2), "threshold": round(thr, 2),
                 "p": (1 + int((null_z >= z).sum())) / (1 + calibrate), "agreement": round(float(res["agreement"][i]), 4),
                 "pattern": int(res["pattern"][i]), "key_id": key_id(key), "how": how}
        if "label" in res:
            entry["label"] = int(res["label"][i])
        out.append(entry)
    return out
