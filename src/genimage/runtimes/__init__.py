"""CPU runtimes for the denoising backbone (``--runtime eager|onnxruntime|openvino``).

genimage issue 17 item 5: measured side by side in ``benchmarks/cpu_runtimes.py``
(BENCHMARKS.md, "CPU runtimes on the same network"), ONNX Runtime and OpenVINO ran the
bundled ``shapes`` UNet faster than eager PyTorch on one CPU thread, so they are offered
behind an option; ``eager`` stays the default. A non-eager runtime runs the backbone
only (the sampler, guidance, text encoder and decoder stay PyTorch) from an ONNX export
cached per model and input shapes (:mod:`genimage.runtimes.export`), and its results are
close to eager's (about 1e-5 on the backbone output) but not bit-identical to them.

Install one with ``pip install 'genimage[onnxruntime]'`` or ``'genimage[openvino]'``.
"""

from __future__ import annotations

from genimage.errors import GenimageError

RUNTIMES = ("eager", "onnxruntime", "openvino")
"""Names accepted by ``--runtime``; ``eager`` is plain PyTorch."""

PACKAGES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
"""Runtime -> the Python packages it needs (``onnx`` for the export itself)."""


def check_runtime(name: str) -> str:
    """``name`` if it is a known runtime, else one clear error."""
    if name not in RUNTIMES:
        raise GenimageError(f"unknown runtime {name!r}; choose one of: {', '.join(RUNTIMES)}")
    return name


def require_runtime(name: str) -> str:
    """The installed version of runtime ``name`` (``torch``'s for eager), or an error saying what to install."""
    import importlib

    check_runtime(name)
    if name == "eager":
        import torch

        return torch.__version__
    versions = []
    for package in PACKAGES[name]:
        try:
            versions.append(importlib.import_module(package).__version__)
        except ImportError:
            raise GenimageError(f"--runtime {name} needs the {package} package: pip install 'genimage[{name}]'") from None
    return versions[0]


def recorded_runtime(entry) -> str:
    """The runtime name a generation record's ``runtime`` entry names (``eager`` for none); a
    malformed entry is one clear error, not a traceback."""
    if entry is None:
        return "eager"
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or name not in RUNTIMES:
        raise GenimageError(f"the record's runtime entry {repr(entry)[:100]} names none of: {', '.join(RUNTIMES)}")
    return name
