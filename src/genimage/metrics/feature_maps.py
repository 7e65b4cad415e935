"""Distances between images in the spatial feature maps of a frozen feature network.

The maps are the activations after each stage's second ReLU of a shipped
:class:`~genimage.metrics.features.SmallCNN` (default the ``shapes`` net, RGB), computed at the
images' own resolution (the trunk is convolutional; no resize), so they see the fine detail that
super-resolution and style transfer change.

* :func:`content_distance`: mean squared difference of the deepest stage's maps (the content
  representation of Gatys et al. 2016, "Image Style Transfer Using Convolutional Neural Networks",
  Eq. 1, at a deep layer).
* :func:`gram_distance`: Gatys et al.'s style representation, the Gram matrices
  ``G = F F^T / (C H W)`` of each stage (Eq. 3), compared by squared Frobenius distance
  (Eq. 4), summed over stages; sizes of the two images may differ.
* :func:`mean_std_distance`: the statistics AdaIN matches (Huang & Belongie 2017, Eq. 13's style
  loss): the L2 distance of per-channel means plus that of standard deviations, summed over stages.
* :func:`perceptual_distance`: an LPIPS-like distance (Zhang et al. 2018, "The Unreasonable
  Effectiveness of Deep Features as a Perceptual Metric", Eq. 1) with unit channel weights: the
  maps normalised to unit length over channels at each pixel, squared differences averaged over
  space and summed over stages. The weights are untuned (LPIPS learns them from human judgements),
  so it is a frozen-feature distance, not LPIPS.

All take ``(N, C, H, W)`` images in ``[-1, 1]`` and return ``(N,)`` float64 tensors.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from genimage.errors import GenimageError


@functools.cache
def _net(name: str):
    from genimage.metrics.features import load_feature_net

    return load_feature_net(name)


@torch.no_grad()
def feature_maps(images: torch.Tensor, net: str = "shapes") -> list[torch.Tensor]:
    """The activation ``(N, C_k, H_k, W_k)`` after each stage's second ReLU, float64."""
    from genimage.metrics.features import check_images

    fn = _net(net)
    x = check_images(images, fn.config.in_channels)
    if min(x.shape[-2:]) < 2 ** len(fn.config.widths):
        raise GenimageError(f"images of {x.shape[-1]}x{x.shape[-2]} px are too small for the {net} feature maps "
                            f"(at least {2 ** len(fn.config.widths)} px)")
    maps = []
    relus = 0
    for layer in fn.module.trunk:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            relus += 1
            if relus % 2 == 0:
                maps.append(x.double())
    return maps


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``(N, C, C)`` of feature maps ``(N, C, H, W)``, divided by ``C H W``."""
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_distance(a: torch.Tensor, b: torch.Tensor, net: str = "shapes") -> torch.Tensor:
    """Mean squared difference of the deepest feature maps of same-size images ``a`` and ``b``."""
    if a.shape != b.shape:
        raise GenimageError(f"content distance needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    fa, fb = feature_maps(a, net)[-1], feature_maps(b, net)[-1]
    return (fa - fb).pow(2).flatten(1).mean(1)


def gram_distance(a: torch.Tensor, b: torch.Tensor, net: str = "shapes") -> torch.Tensor:
    """Sum over stages of ``||G(a) - G(b)||_F^2`` (``b`` may have another size; one image or N)."""
    return sum((gram(fa) - gram(fb)).pow(2).flatten(1).sum(1) for fa, fb in zip(feature_maps(a, net),
                                                                                feature_maps(b, net)))


def mean_std_distance(a: torch.Tensor, b: torch.Tensor, net: str = "shapes") -> torch.Tensor:
    """Sum over stages of ``||mu(a) - mu(b)|| + ||sigma(a) - sigma(b)||`` of per-channel spatial statistics."""
    total = 0
    for fa, fb in zip(feature_maps(a, net), feature_maps(b, net)):
        ma, sa = fa.mean((2, 3)), fa.std((2, 3), unbiased=False)
        mb, sb = fb.mean((2, 3)), fb.std((2, 3), unbiased=False)
        total = total + (ma - mb).norm(dim=1) + (sa - sb).norm(dim=1)
    return total


def perceptual_distance(a: torch.Tensor, b: torch.Tensor, net: str = "shapes") -> torch.Tensor:
    """LPIPS-like distance with unit weights (module docstring) of same-size images ``a`` and ``b``."""
    if a.shape != b.shape:
        raise GenimageError(f"perceptual distance needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    total = 0
    for fa, fb in zip(feature_maps(a, net), feature_maps(b, net)):
        na = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        total = total + (na - nb).pow(2).sum(1).mean((1, 2))
    return total


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of ``a`` vs ``b`` in ``[-1, 1]``, on the 8-bit scale's ``[0, 1]`` range."""
    if a.shape != b.shape:
        raise GenimageError(f"PSNR needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = ((a.double() - b.double()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))
