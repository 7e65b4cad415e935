"""Optional Inception-v3 features for standard FID / KID (Heusel et al., 2017; Szegedy et al., 2016).

Standard FID uses the pool3 (2048-d) features of the TensorFlow Inception-v3 graph
``inception-2015-12-05``, as ported to PyTorch by pytorch-fid (``pt_inception-2015-12-05-
6726825d.pth``) and torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``, the same
bytes). genimage downloads nothing at run time, so the user supplies that file, and
:func:`load_inception` refuses any file whose sha256 is not the published one:
``6726825d0af5...9129b2`` (95,628,359 bytes; the ``6726825d`` in the file name is the first
8 hex digits of the hash, the ``torch.hub`` naming convention).

The file is a pickle, which genimage otherwise refuses; it is unpickled only after its hash
matched, and then with ``torch.load(weights_only=True)`` (tensors and plain containers only).
The network is genimage's own definition of the FID variant of Inception-v3
(:mod:`genimage.metrics.inception_net`: torchvision's ``Inception3`` names and shapes, 1008
classes, no aux head, TF-style pooling branches), so neither torchvision nor torch-fidelity is
needed. Images are quantised to 8-bit levels (as if saved to PNG), then resized to 299x299 and
scaled as the TensorFlow graph does (the default; the numbers of TTUR's reference code,
torch-fidelity and torchmetrics) or as pytorch-fid does (``input_mode="pytorch-fid"``, the
``inception-pytorch-fid:PATH`` feature spec): see :mod:`genimage.metrics.inception_net`.
The network and both input modes agree with pytorch-fid and torch-fidelity on random weights
(``benchmarks/inception_crosscheck.py``; BENCHMARKS.md, "Inception cross-check").
"""

from __future__ import annotations

from pathlib import Path

import torch

from genimage.errors import GenimageError
from genimage.metrics.inception_net import FIDInceptionV3, load_fid_state_dict
from genimage.utils.weights import sha256_file

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_SIZE = 95_628_359
INCEPTION_SOURCE = "inception-v3 pool3 2048-d (pt_inception-2015-12-05-6726825d; standard FID features)"
INPUT_MODE_NOTES = {
    "tensorflow": "TensorFlow-graph resize and scaling, as TTUR / torch-fidelity / torchmetrics",
    "pytorch-fid": "pytorch-fid resize and scaling",
}


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

    feature_dim = 2048
    name = "inception"

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net.eval()
        mode = getattr(net, "input_mode", "tensorflow")
        self.source = f"{INCEPTION_SOURCE[:-1]}; {INPUT_MODE_NOTES.get(mode, mode)})"

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
        """``(N, 2048)`` pool3 features. Grayscale is repeated to RGB; values are quantised to
        the 256 levels of an 8-bit image, which the network takes as floats in ``[0, 255]``."""
        from genimage.metrics.images import check_images

        images = check_images(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != 3:
            raise GenimageError(f"Inception takes 1- or 3-channel images, got {images.shape[1]} channels")
        if batch_size < 1:
            raise GenimageError(f"batch_size must be >= 1, got {batch_size}")
        self.net.eval()
        out = []
        for i in range(0, images.shape[0], batch_size):
            levels = ((images[i:i + batch_size].clamp(-1, 1) + 1) * 127.5).round()
            out.append(self.net(levels).float())
        return torch.cat(out) if out else torch.zeros(0, self.feature_dim)


def load_inception(path: str | Path, input_mode: str = "tensorflow") -> InceptionFeatures:
    """Load the FID Inception-v3 from a local ``pt_inception-2015-12-05-6726825d.pth``.

    The sha256 is checked first; only then is the file unpickled (``weights_only=True``) and
    loaded, strictly, into :class:`~genimage.metrics.inception_net.FIDInceptionV3`.
    ``input_mode``: ``"tensorflow"`` or ``"pytorch-fid"`` (module docstring).

    Raises:
        GenimageError: The file is missing, its sha256 is not the published one, it cannot be
            read as a tensor state_dict, or its keys / shapes do not fit the network.
    """
    net = FIDInceptionV3(input_mode)  # a bad mode fails before the 95 MB file is hashed
    p = verify_inception_file(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure is a bad file)
        raise GenimageError(f"{p} passed the sha256 check but could not be read as a PyTorch state_dict "
                            f"({type(e).__name__}); re-download {INCEPTION_FILENAME}") from None
    return InceptionFeatures(load_fid_state_dict(net, state, source=str(p)))
