"""How well a generated image follows a spatial control: edge F1 and per-object mask IoU.

* **Edge F1** with a distance tolerance, as in the boundary benchmarks of Martin et al. 2004
  (BSDS, "Learning to Detect Natural Image Boundaries", Sec. 4.1: an edge pixel counts as
  matched when the other map has an edge within the tolerance), here ``tolerance`` pixels in
  the chessboard metric (a 3x3 neighbourhood for 1 px), without their one-to-one matching:
  precision = generated edge pixels near a control edge / generated edge pixels; recall =
  control edge pixels near a generated edge / control edge pixels.
* **Mask IoU** per object of a shapes scene: the object's exact visible mask (renderer
  coverage >= 0.5, :func:`genimage.editing.control_maps.object_masks`) against the generated
  pixels whose nearest palette colour is the object's colour with coverage >= 0.5 (the
  pixel rule of :mod:`genimage.data.shapes_analyzer`); when several objects share a colour,
  each such pixel goes to the object whose true mask is nearest.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def edge_f1(generated: np.ndarray, reference: np.ndarray, tolerance: int = 1) -> dict[str, float]:
    """Tolerant edge precision / recall / F1 of bool edge maps ``(H, W)``.

    Args:
        generated: Edges of the generated image.
        reference: Control (ground-truth) edges.
        tolerance: Match distance in pixels (chessboard).

    Returns:
        ``{"precision", "recall", "f1"}``; both empty gives 1.0, one empty 0.0.
    """
    generated, reference = np.asarray(generated, bool), np.asarray(reference, bool)
    if not generated.any() and not reference.any():
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not generated.any() or not reference.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    struct = np.ones((2 * tolerance + 1,) * 2, dtype=bool)
    near_ref = ndimage.binary_dilation(reference, structure=struct) if tolerance else reference
    near_gen = ndimage.binary_dilation(generated, structure=struct) if tolerance else generated
    p = float((generated & near_ref).sum() / generated.sum())
    r = float((reference & near_gen).sum() / reference.sum())
    return {"precision": p, "recall": r, "f1": 0.0 if p + r == 0 else 2 * p * r / (p + r)}


def object_ious(generated_rgb: np.ndarray, scene, supersample: int = 4) -> list[float]:
    """IoU of each object of ``scene`` with the generated pixels of its colour.

    Args:
        generated_rgb: uint8 ``(H, W, 3)`` generated image (the scene's size).
        scene: The :class:`~genimage.data.shapes.Scene` the control came from.
        supersample: The renderer's supersampling factor.

    Returns:
        One IoU per object, in caption order.
    """
    from genimage.data.shapes import PALETTE
    from genimage.data.shapes_analyzer import _pixel_colours
    from genimage.editing.control_maps import object_masks

    best, alpha = _pixel_colours(np.asarray(generated_rgb, dtype=np.float32))
    colours = list(PALETTE)
    truths = [cover >= 0.5 for cover in object_masks(scene, supersample)]
    dist = np.stack([ndimage.distance_transform_edt(~t) if t.any() else np.full(t.shape, np.inf) for t in truths])
    out = []
    for k, (obj, truth) in enumerate(zip(scene.objects, truths)):
        pred = (best == colours.index(obj.colour)) & (alpha >= 0.5)
        same = [j for j, o in enumerate(scene.objects) if o.colour == obj.colour]
        if len(same) > 1:  # split the colour's pixels by the nearest true mask
            pred &= dist[k] <= dist[same].min(0)
        union = (truth | pred).sum()
        out.append(float((truth & pred).sum() / union) if union else 1.0)
    return out
