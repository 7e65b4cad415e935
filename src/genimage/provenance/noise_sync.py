"""Finding the noise mark in a rotated, cropped or blurred image: a search over hypotheses.

Gaussian Shading (:mod:`genimage.provenance.noise_mark`) reads one sign per noise element, so the
inverted noise must line up with the keyed pattern element for element: a centred crop of 30%
resized back, or a rotation of 15 degrees, moves most elements by more than a pixel and the mark
is lost (BENCHMARKS.md, "Noise-space mark on pixel models").

Measured on ``photos-pixel``, the sampler's inversion commutes with such a transform: the noise
inverted from a rotated image is close to the rotated noise. So the detector inverts the image as
it is, once, then warps the inverted noise back under each hypothesis (a rotation about the
centre, or a centred zoom) with bilinear resampling (``torch.nn.functional.grid_sample``) and
scores only the elements that stay inside the image. This is the exhaustive search over a
transform grid that template-free watermarks use for synchronisation (Kutter 1998, "Watermarking
resisting to translation, rotation, and scaling", discusses the search and its false-positive
cost). The best hypothesis wins; the maximum over hypotheses raises unmarked scores too, which
the calibrated threshold (:mod:`genimage.provenance.noise_calibration`) measures.

Measured tolerance (``photos-pixel``, 48 images, median z): a rotation hypothesis 1 degree off
keeps 95% of the score and 2 degrees off 75%; a zoom 0.03 off keeps about 90%. Hence the default
grid: rotations every 2 degrees up to 30 either way and zooms every 0.04 up to 1.48 (a centred
crop that keeps 46% of the area), 43 geometries with the identity. Off-centre crops (a translation
as well) are not searched.

Each geometry is also tried with the warped noise low-passed (``blur`` 0.5 and 1 pixel): a blurred
or compressed image inverts to a low-passed copy of its noise plus error, and correlating the
low-passed reading with the pattern is the matched filter for it (with soft scoring, measured on
100 images: found after a Gaussian blur of radius 2 in 0.95 of them at ``blur = 1`` where the
unfiltered reading finds 0.30). So the default grid has 129 hypotheses; scoring them all against
2**16 patterns costs about 5 s per 100 images on 2 cores, the inversion itself (once) 6 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genimage.errors import GenimageError


@dataclass(frozen=True)
class Hypothesis:
    """How the image may have been changed since it was generated.

    Attributes:
        rotation: Degrees it was turned counterclockwise about its centre (as PIL's ``rotate``).
        zoom: How much it was enlarged about its centre: a centred crop keeping ``k`` of each
            side, resized back to the full size, is ``zoom = 1 / k``.
        blur: Standard deviation (pixels) of a Gaussian low-pass applied to the warped noise
            before scoring: the matched filter of an image that was blurred or compressed
            (its inverted noise is a low-passed copy of the original plus error, so the
            correlation with the low-passed reading collects what is left; 0: none).
    """

    rotation: float = 0.0
    zoom: float = 1.0
    blur: float = 0.0

    def as_dict(self) -> dict:
        return {"rotation": round(self.rotation, 3), "zoom": round(self.zoom, 4), "blur": self.blur}


IDENTITY = Hypothesis()


def hypotheses(max_rotation: float = 30.0, rotation_step: float = 2.0, max_zoom: float = 1.5,
               zoom_step: float = 0.04, blurs: tuple[float, ...] = (0.0, 0.5, 1.0)) -> list[Hypothesis]:
    """Each of ``blurs`` with each geometry: the identity, then rotations ``+-rotation_step,
    +-2 rotation_step, ... <= max_rotation``, then zooms ``1 + zoom_step, ... <= max_zoom``
    (the default grid: 43 geometries x 3 blurs = 129 hypotheses, the identity first)."""
    if rotation_step <= 0 or zoom_step <= 0 or max_rotation < 0 or max_zoom < 1 or not blurs or min(blurs) < 0:
        raise GenimageError("the search grid needs positive steps, max_rotation >= 0, max_zoom >= 1 "
                            "and at least one blur >= 0")
    geometry = [(0.0, 1.0)]
    for i in range(1, int(math.floor(max_rotation / rotation_step + 1e-9)) + 1):
        geometry += [(i * rotation_step, 1.0), (-i * rotation_step, 1.0)]
    for i in range(1, int(math.floor((max_zoom - 1) / zoom_step + 1e-9)) + 1):
        geometry.append((0.0, 1 + i * zoom_step))
    return [Hypothesis(r, z, float(b)) for b in blurs for r, z in geometry]


def warp_back(x: torch.Tensor, h: Hypothesis) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo hypothesis ``h`` on ``x`` ``(B, C, H, W)`` (an image, or the noise inverted from it).

    Returns the warped tensor, whose element ``p`` is ``x`` read where ``h`` moved ``p`` to
    (bilinear: centred coordinates ``p`` -> ``zoom * R(-rotation) p``), low-passed by ``h.blur``,
    and ``read`` ``(1, 1, H, W)`` (bool): the elements whose source lies inside ``x`` (half a
    pixel in from its edge), the only ones that still carry the original.
    """
    b, c, height, width = x.shape
    if height != width:
        raise GenimageError(f"geometric synchronisation needs square noise, got {height}x{width}")
    if h.rotation == 0 and h.zoom == 1:
        out, inside = x, torch.ones(1, 1, height, width, dtype=torch.bool)
    else:
        out, inside = _warp(x, h)
    if h.blur > 0:
        out = gaussian_blur(out * inside.to(out.dtype), h.blur) * inside.to(out.dtype)
    return out, inside


def _warp(x: torch.Tensor, h: Hypothesis) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, height, width = x.shape
    t = math.radians(-h.rotation)  # PIL's counterclockwise turn is clockwise in (x right, y down)
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]]) * h.zoom
    grid = F.affine_grid(theta[None].to(x.dtype), (1, c, height, width), align_corners=False)
    out = F.grid_sample(x, grid.expand(b, -1, -1, -1).to(x.device), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    inside = (grid.abs() <= 1 - 1 / width).all(-1)  # (1, H, W): pixel centres of the source
    return out, inside[:, None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` convolved with a Gaussian of ``sigma`` pixels (separable, 3 sigma
    radius, zero padding: what lies outside the read region counts as nothing)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)


def synchronised(noises: torch.Tensor, grid: list[Hypothesis]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every candidate inversion ``(K, B, C, H, W)`` warped back under every hypothesis of
    ``grid``: ``(K * len(grid), B, C, H, W)`` (candidate-major) and the read masks
    ``(K * len(grid), 1, H, W)``, ready for :func:`genimage.provenance.noise_mark.score_candidates`."""
    warped, reads = [], []
    for cand in noises:
        for h in grid:
            w, r = warp_back(cand, h)
            warped.append(w)
            reads.append(r[0])
    return torch.stack(warped), torch.stack(reads)
