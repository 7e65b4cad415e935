"""A backbone run by ONNX Runtime or OpenVINO instead of PyTorch, on the CPU, one session per input shape.

:class:`RuntimeBackbone` keeps the backbone contract (``(x, c_noise, cond) -> raw``,
``models/backbones/base.py``) so the denoiser, samplers and guidance are unchanged. On the
first call with a new input signature (guidance doubles the batch inside its interval and
not outside it; a last batch may be smaller) it exports the wrapped network
(:func:`genimage.runtimes.export.cached_onnx`) and opens a session on it: ONNX Runtime's CPU
execution provider with every graph optimisation (``ORT_ENABLE_ALL``), or OpenVINO's ``CPU``
device at f32 precision, its compiled model cached next to the export. Both use the thread count PyTorch uses (``torch.get_num_threads()``),
so ``OMP_NUM_THREADS`` governs all three runtimes alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from genimage.errors import GenimageError
from genimage.runtimes.export import cached_onnx

Session = Callable[[dict[str, np.ndarray]], np.ndarray]


def open_session(runtime: str, path, threads: int) -> Session:
    """``feed -> output`` for the ONNX file ``path`` under ``runtime``."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda feed: session.run(None, feed)[0]
    if runtime == "openvino":
        import openvino as ov

        # CACHE_DIR: OpenVINO keeps the compiled model there, so a later process skips most of the compile.
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": "f32",
                                                              "CACHE_DIR": str(Path(path).parent / "openvino")})
        request = compiled.create_infer_request()

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            request.infer(feed)
            return request.get_output_tensor(0).data.copy()
        return run
    raise GenimageError(f"no session for runtime {runtime!r}")


class RuntimeBackbone(nn.Module):
    """``network`` run by ``runtime`` (``onnxruntime`` or ``openvino``).

    Args:
        network: The PyTorch backbone (kept as a submodule: its parameters still say where
            the model lives, and it is what gets exported).
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        identity: What identifies the weights in the export cache key (weights sha256,
            merged LoRAs, backbone config).
    """

    def __init__(self, network: nn.Module, runtime: str, identity: dict[str, Any]) -> None:
        super().__init__()
        self.network, self.runtime, self.identity = network, runtime, identity
        self.config = getattr(network, "config", None)
        self._sessions: dict[tuple, Session] = {}

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict[str, torch.Tensor] | None = None,
                control=None) -> torch.Tensor:
        if control is not None:
            raise GenimageError(f"--runtime {self.runtime} does not run spatial control (--control); use --runtime eager")
        if x.device.type != "cpu":
            raise GenimageError(f"--runtime {self.runtime} runs on the CPU only; use --device cpu or --runtime eager")
        keys = sorted(cond) if cond else []
        inputs = [x.float(), c_noise.float(), *(cond[k] for k in keys)]
        signature = tuple((k, tuple(t.shape), t.dtype) for k, t in zip(["x", "c_noise", *keys], inputs))
        session = self._sessions.get(signature)
        if session is None:
            path = cached_onnx(self.network, keys, inputs, self.identity)
            session = self._sessions[signature] = open_session(self.runtime, path, torch.get_num_threads())
        feed = {name: t.detach().contiguous().numpy() for name, t in zip(["x", "c_noise", *keys], inputs)}
        return torch.from_numpy(np.asarray(session(feed))).to(x.dtype)
