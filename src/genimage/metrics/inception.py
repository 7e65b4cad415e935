"""Optional Inception-v3 features for standard FID / KID (Heusel et al., 2017; Szegedy et al., 2016).

Standard FID uses the pool3 (2048-d) features of the TensorFlow Inception-v3 graph
``inception-2015-12-05``, as ported to PyTorch by pytorch-fid (``pt_inception-2015-12-05-
6726825d.pth``) and torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``, the same
bytes). genimage downloads nothing at run time, so the user supplies that file, and
:func:`load_inception` refuses any file whose sha256 is not the published one:
``6726825d0af5...9129b2`` (95,628,359 bytes; the ``6726825d`` in the file name is the first
8 hex digits of the hash, the ``torch.hub`` naming convention).

The file is a pickle, which genimage otherwise refuses; it is unpickled only after its hash
matched (by torch-fidelity's ``torch.load``, restricted to tensors since torch 2.6's
``weights_only=True`` default). The network itself
comes from the ``torch-fidelity`` package (``FeatureExtractorInceptionV3``, TF-exact resize
and blocks); without it a :class:`GenimageError` says what to install.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genimage.errors import GenimageError
from genimage.utils.weights import sha256_file

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_SIZE = 95_628_359
INCEPTION_SOURCE = "inception-v3 pool3 2048-d (pt_inception-2015-12-05-6726825d; standard FID features)"


def verify_inception_file(path: str | Path) -> Path:
    """Return ``path`` if it is the published FID Inception file (by sha256), else raise."""
    p = Path(path)
    if not p.is_file():
        raise GenimageError(
            f"Inception weights not found: {p}; download {INCEPTION_FILENAME} (pytorch-fid release "
            "'fid_weights') on a machine with internet and pass its path"
        )
    digest = sha256_file(p)
    if digest != INCEPTION_SHA256:
        raise GenimageError(
            f"{p} is not the FID Inception file: sha256 {digest[:16]}... differs from the published "
            f"{INCEPTION_SHA256[:16]}... of {INCEPTION_FILENAME} ({INCEPTION_SIZE:,} bytes); "
            "re-download it (a truncated download is the usual cause)"
        )
    return p


class InceptionFeatures:
    """Inception-v3 pool3 features of images in ``[-1, 1]`` (any size; resized to 299 inside)."""

    source = INCEPTION_SOURCE
    feature_dim = 2048
    name = "inception"

    def __init__(self, extractor: torch.nn.Module) -> None:
        self.extractor = extractor.eval()

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        """``(N, 2048)`` pool features. Grayscale is repeated to RGB; values are quantised to uint8."""
        from genimage.metrics.features import check_images

        images = check_images(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != 3:
            raise GenimageError(f"Inception takes 1- or 3-channel images, got {images.shape[1]} channels")
        out = []
        for i in range(0, images.shape[0], batch_size):
            u8 = ((images[i:i + batch_size].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            out.append(self.extractor(u8)[0].float())
        return torch.cat(out)


def load_inception(path: str | Path) -> InceptionFeatures:
    """Load the FID Inception-v3 from a local ``pt_inception-2015-12-05-6726825d.pth``.

    Raises:
        GenimageError: The file is missing or its sha256 is not the published one, or the
            ``torch-fidelity`` package (which provides the network definition) is not installed.
    """
    p = verify_inception_file(path)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise GenimageError(
            f"{p} passed the sha256 check, but building Inception-v3 needs the torch-fidelity package "
            "(pip install torch-fidelity; it also installs torchvision). Without it, use genimage's domain "
            "feature networks (load_feature_net('digits'), ...), whose scores are not comparable to published FID"
        ) from None
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(p))
    return InceptionFeatures(extractor)
