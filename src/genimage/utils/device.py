"""Which device a model runs on: ``auto`` (CUDA where there is one, else the CPU), ``cpu``,
``cuda`` / ``cuda:N`` or ``mps``, checked up front so a missing GPU is a clear error rather
than a traceback from deep inside the first convolution.

Noise is always drawn on the CPU from per-image generators (:mod:`genimage.samplers.noise`),
so a seed gives the same starting noise on every device; the network's arithmetic differs
between devices, so images match bit for bit only on the device type they were made on
(generation records store it, and ``genimage replay`` uses it).
"""

from __future__ import annotations

import torch

from genimage.errors import GenimageError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N | mps"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``spec`` -> an available :class:`torch.device`.

    Raises:
        GenimageError: The spec is not a device name, or names one this machine lacks.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise GenimageError(f"unknown device {spec!r}; use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GenimageError(f"--device {spec}: this machine has no CUDA GPU (or this torch build has no CUDA); "
                                "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise GenimageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GenimageError(f"--device {spec}: Apple's MPS is not available here; use --device cpu or auto")
        return device
    raise GenimageError(f"unsupported device {spec!r}; use {DEVICE_CHOICES}")
