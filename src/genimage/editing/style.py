"""Style transfer: the style of one image applied to the content of another, by adaptive instance
normalisation (AdaIN; Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive
Instance Normalization", Eq. 8) inside a frozen autoencoder.

AdaIN gives each channel of the content's feature map ``x`` the mean and standard deviation of the
style's feature map ``y`` over space:

    AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)

and the strength ``S`` interpolates the features, ``t = S AdaIN(x, y) + (1 - S) x`` (Eq. 11's
content-style trade-off). Huang & Belongie train a decoder for VGG features; genimage already has a
trained decoder, the autoencoder of its latent models (:mod:`genimage.families.vae`), so the
statistics are matched where that decoder can invert them (``method``):

* ``pixels``: AdaIN of the RGB channels themselves (a colour transfer, Reinhard et al. 2001 in RGB);
  no network.
* ``latent``: AdaIN of the autoencoder's latents ``z`` (``C_z`` channels), then decoding.
* ``decoder``: the content's latents are decoded while the output of every decoder stage (the input
  convolution and each residual / upsampling block) is AdaIN-ed toward the statistics the same stage
  has when decoding the style's latents: a multi-level AdaIN (as WCT matches several levels, Li et al.
  2017), which transfers texture at several scales, not only colour.

Which one is the default was chosen by measurement (``benchmarks/style_transfer.py``; BENCHMARKS.md,
"Style transfer"): with the bundled autoencoder, trained on flat shapes scenes, ``pixels`` keeps the
content's edges best (edge correlation 0.79 vs 0.47 for ``decoder``) at the same Gram distance to
the style, so it is the default; ``decoder`` is the method to use with an autoencoder trained on the
kind of images being styled (``--style-autoencoder``). The autoencoder is convolutional, so content and style may have any sizes (each is
padded to a multiple of the autoencoder's downsampling by replicating its border, and the padding is
cropped off); the output has the content's size. Everything is deterministic: the record keeps the
sha256 of both inputs, the method, the strength and the autoencoder's sha256, and
:func:`replay_style` rebuilds the pixels bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genimage.errors import GenimageError

#: Style-transfer methods (module docstring).
METHODS = ("pixels", "latent", "decoder")
#: The default method (BENCHMARKS.md, "Style transfer").
DEFAULT_METHOD = "pixels"
#: The bundled autoencoder used when none is given (the shapes model's f4 autoencoder).
DEFAULT_AUTOENCODER = "shapes/autoencoder"


def mean_std(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation over space of ``x`` ``(B, C, H, W)``:
    two ``(B, C, 1, 1)`` tensors (float64)."""
    x = x.double()
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mu, sd


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, strength: float = 1.0,
          eps: float = 1e-5) -> torch.Tensor:
    """Huang & Belongie 2017, Eq. 8 and 11: ``content`` ``(B, C, H, W)`` with the channel statistics
    ``style_mean``/``style_std`` (``(B or 1, C, 1, 1)``), mixed with itself by ``1 - strength``.
    Returns ``content``'s dtype."""
    mu, sd = mean_std(content, eps)
    styled = (content.double() - mu) / sd * style_std.double() + style_mean.double()
    s = float(strength)
    return (s * styled + (1 - s) * content.double()).to(content.dtype)


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _decoder_stages(decoder, z: torch.Tensor, hook=None) -> torch.Tensor:
    """Run the autoencoder's decoder (:class:`~genimage.families.autoencoder_networks.Decoder`) on
    unscaled latents ``z``, calling ``hook(k, h) -> h`` on the output of every stage ``k``."""
    hook = hook or (lambda k, h: h)
    if decoder.cfg.latent == "flat" or decoder.label is not None:
        raise GenimageError("style transfer needs an unconditional autoencoder with spatial latents")
    h = hook(0, decoder.inp(z))
    for k, layer in enumerate(decoder.body.layers, start=1):
        h = hook(k, layer(h, None) if hasattr(layer, "norm1") else layer(h))
    return decoder.conv_out(F.silu(decoder.norm_out(h)))


@torch.no_grad()
def transfer_style(content: torch.Tensor, style: torch.Tensor, autoencoder=None, *, strength: float = 1.0,
                   method: str = DEFAULT_METHOD) -> torch.Tensor:
    """The content image with the style image's style.

    Args:
        content: ``(1, C, H, W)`` in ``[-1, 1]``, any size.
        style: ``(1, C, H', W')`` in ``[-1, 1]``, any size.
        autoencoder: A :class:`~genimage.families.vae.KLAutoencoder` (``method`` ``latent`` or
            ``decoder``; ignored for ``pixels``).
        strength: ``S`` in ``[0, 1]``: 0 keeps the content's statistics, 1 takes the style's.
        method: ``pixels`` | ``latent`` | ``decoder`` (module docstring).

    Returns:
        ``(1, C, H, W)`` float32 in ``[-1, 1]``.
    """
    if method not in METHODS:
        raise GenimageError(f"--style-method must be one of {' | '.join(METHODS)}, got {method!r}")
    if not 0 <= float(strength) <= 1:
        raise GenimageError(f"--style-strength must be in [0, 1], got {strength}")
    if content.shape[1] != style.shape[1]:
        raise GenimageError(f"content has {content.shape[1]} channels but the style image {style.shape[1]}")
    content, style = content.float(), style.float()
    if method == "pixels":
        return adain(content, *mean_std(style), strength).clamp(-1, 1)
    if autoencoder is None:
        raise GenimageError(f"--style-method {method} needs an autoencoder")
    ae = autoencoder.ae
    h, w = content.shape[-2:]
    f = int(ae.encoder.cfg.downsample)
    zc, _ = ae.encoder(_pad_to(content, f))
    zs, _ = ae.encoder(_pad_to(style, f))
    if method == "latent":
        out = ae.decoder(adain(zc, *mean_std(zs), strength))
    else:
        stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(k: int, x: torch.Tensor) -> torch.Tensor:
            stats[k] = mean_std(x)
            return x

        _decoder_stages(ae.decoder, zs, record)
        out = _decoder_stages(ae.decoder, zc, lambda k, x: adain(x, *stats[k], strength))
    return out[:, :content.shape[1], :h, :w].float().clamp(-1, 1)


def load_style_autoencoder(name: str | Path | None = None):
    """The autoencoder a style transfer runs in: ``name`` (an autoencoder model folder, or a latent
    model whose autoencoder is used), default the bundled shapes autoencoder. Returns a
    :class:`~genimage.latent.autoencoder.LoadedAutoencoder`."""
    from genimage.latent.autoencoder import load_autoencoder, load_latent_autoencoder
    from genimage.models.config import ModelConfig
    from genimage.models.io import BUNDLED_DIR, resolve_model_folder

    if name is None or str(name) == DEFAULT_AUTOENCODER:
        return load_autoencoder(BUNDLED_DIR / DEFAULT_AUTOENCODER)
    config = ModelConfig.load(resolve_model_folder(name))
    if config.autoencoder:  # a latent model: its own autoencoder
        return load_latent_autoencoder(config)
    return load_autoencoder(resolve_model_folder(name))


@dataclass
class StyleEdit:
    """A style transfer of two input files, ready to run, record and replay.

    Attributes:
        content: ``(1, C, H, W)`` the content image at its own size.
        style: ``(1, C, H', W')`` the style image at its own size.
        strength: ``S`` of :func:`adain`.
        method: One of :data:`METHODS`.
        info: The record's ``edit`` entry.
    """

    content: torch.Tensor
    style: torch.Tensor
    strength: float
    method: str
    info: dict[str, Any]

    def run(self, autoencoder) -> torch.Tensor:
        """The output ``(C, H, W)``."""
        return transfer_style(self.content, self.style, autoencoder.model if autoencoder is not None else None,
                              strength=self.strength, method=self.method)[0]


def build_style_edit(content: str | Path | bytes, style: str | Path | bytes, channels: int = 3, *,
                     strength: float = 1.0, method: str = DEFAULT_METHOD) -> StyleEdit:
    """Read both input files (any size and aspect; read as ``channels`` channels) and check the settings."""
    from genimage.editing.canvas import load_full_image
    from genimage.editing.spec import pixels_sha256

    if method not in METHODS:
        raise GenimageError(f"--style-method must be one of {' | '.join(METHODS)}, got {method!r}")
    if not 0 <= float(strength) <= 1:
        raise GenimageError(f"--style-strength must be in [0, 1], got {strength}")
    image = load_full_image(content, channels)
    from genimage.data.image_io import pil_to_tensor
    from genimage.editing.spec import _read

    look = pil_to_tensor(_read(style, channels, "style image"))[None]
    if look.shape[-1] * look.shape[-2] < 4:
        raise GenimageError(f"the style image is {look.shape[-1]}x{look.shape[-2]} px: too small to have a style "
                            "(give at least 2x2 pixels)")
    info = {"mode": "style", "method": method, "strength": float(strength), "image_sha256": pixels_sha256(image[0]),
            "style_sha256": pixels_sha256(look[0]),
            "canvas": {"fit": "native", "input_size": [int(image.shape[-1]), int(image.shape[-2])],
                       "size": [int(image.shape[-1]), int(image.shape[-2])]}}
    return StyleEdit(image, look, float(strength), method, info)


def style_record(edit: StyleEdit, autoencoder, model_ref: str, watermark: bool = True):
    """The generation record of a style transfer's output."""
    from genimage import __version__
    from genimage.provenance.record import GenerationRecord
    from genimage.provenance.watermark import record_entry

    h, w = edit.content.shape[-2:]
    sha = autoencoder.sha256 if autoencoder is not None else ""
    return GenerationRecord(model=model_ref, model_sha256=sha, objective="style-transfer", path="",
                            sampler="adain", schedule="", steps=1, guidance=1.0, seed=0, width=int(w), height=int(h),
                            edit=dict(edit.info), watermark=record_entry(edit.content.shape[1], h, w, watermark),
                            genimage_version=__version__)


def is_style_record(record) -> bool:
    """Whether a generation record is a style transfer's."""
    return (record.edit or {}).get("mode") == "style"


def replay_style(record, image_path: str | Path, model: str | Path | None = None, init: str | Path | None = None,
                 style: str | Path | None = None):
    """Regenerate a style transfer's PNG from its record and both input files; a :class:`~genimage.provenance.replay_check.ReplayResult`."""
    from genimage.provenance.replay_check import compare_with_png

    info = record.edit
    if init is None or style is None:
        raise GenimageError("this image is a style transfer; pass --init CONTENT --style STYLE: the inputs it was "
                            "made from")
    ae = None if info["method"] == "pixels" else load_style_autoencoder(model or record.model)
    edit = build_style_edit(init, style, ae.config.channels if ae is not None else 3,
                            strength=float(info["strength"]), method=info["method"])
    if edit.info["image_sha256"] != info["image_sha256"]:
        raise GenimageError(f"{init} is not the content image this image was made from (sha256 of its pixels differs)")
    if edit.info["style_sha256"] != info["style_sha256"]:
        raise GenimageError(f"{style} is not the style image this image was made from (sha256 of its pixels differs)")
    image = edit.run(ae)
    weights_match = (ae.sha256 if ae is not None else "") == record.model_sha256
    return compare_with_png(image, image_path, record, weights_match)
