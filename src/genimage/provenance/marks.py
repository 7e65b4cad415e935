"""Look for every invisible mark genimage knows in one image: the keyed spread-spectrum
pattern (:mod:`genimage.provenance.watermark`) and the invisible-watermark-compatible DWT-DCT
message (:mod:`genimage.provenance.dwtdct`)."""

from __future__ import annotations

import numpy as np
import torch

from genimage.provenance import dwtdct
from genimage.provenance import watermark as ss


def find_marks(image: torch.Tensor, key: str | None = None, message: bytes | None = None) -> dict:
    """Test ``image`` ``(C, H, W)`` in ``[-1, 1]`` (C = 1 or 3) for both marks.

    Args:
        image: The decoded image.
        key: Watermark key; default :func:`genimage.provenance.watermark.watermark_key`.
        message: DWT-DCT message to look for; default the key's
            (:func:`genimage.provenance.dwtdct.default_message`).

    Returns:
        ``{"pattern": {...}, "dwtdct": {...}}``; each has ``found`` (bool or ``None`` when
        the image cannot carry the mark), ``how`` (one line), and its score: ``z`` and the
        one-sided ``p`` of the pattern's correlation; for DWT-DCT the block-agreement ``z``,
        ``p``, ``bit_accuracy`` against ``message`` and the ``decoded`` bytes (hex).
    """
    from genimage.data.types import image_to_uint8

    key = key or ss.watermark_key()
    c, h, w = image.shape
    out: dict = {}
    if ss.fits(c, h, w):
        z = float(ss.detection_scores(image[None].float(), key)[0])
        out["pattern"] = {"found": z > ss.DETECTION_Z, "z": round(z, 2), "p": ss.p_value(z), "key_id": ss.key_id(key),
                          "how": "correlation of high frequencies with the keyed +-1 pattern; found when p < 0.001"}
    else:
        out["pattern"] = {"found": None, "how": f"too small: needs {ss.MIN_VALUES} pixel values"}
    message = message if message is not None else dwtdct.default_message(key)
    nbits = 8 * len(message)
    if c != 3 or dwtdct.num_blocks(h, w) < max(nbits, 1):
        out["dwtdct"] = {"found": None, "how": f"needs an RGB image with at least {nbits} 8x8 blocks"}
        return out
    rgb = np.ascontiguousarray(image_to_uint8(image))
    s = dwtdct.score(rgb, message)
    out["dwtdct"] = {"found": s["z"] > dwtdct.DETECTION_Z, "z": round(s["z"], 2), "p": ss.p_value(s["z"]),
                     "bit_accuracy": s["bit_accuracy"], "decoded": s["decoded"], "message": message.hex(),
                     "blocks": s["blocks"],
                     "how": "DWT-DCT (invisible-watermark dwtDct): blocks agreeing with the message; found when p < 0.001"}
    return out
