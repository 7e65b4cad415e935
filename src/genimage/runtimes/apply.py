"""Put a loaded diffusion model's backbone under a CPU runtime (``--runtime``)."""

from __future__ import annotations

from genimage.errors import GenimageError
from genimage.runtimes import require_runtime


def use_runtime(pipe, name: str, bf16: bool = False) -> dict | None:
    """Run ``pipe``'s backbone under runtime ``name``, after its LoRAs are merged and its control
    set; returns the record entry ``{"name", "version"}`` (``None`` for eager, which changes nothing).

    Refused with one clear line where the runtime cannot apply: not on the CPU, bf16, spatial
    control, a backbone already wrapped.
    """
    from genimage.runtimes.backbone import RuntimeBackbone

    version = require_runtime(name)
    if name == "eager":
        return None
    if pipe.device.type != "cpu":
        raise GenimageError(f"--runtime {name} runs on the CPU only; use --device cpu or --runtime eager")
    if bf16:
        raise GenimageError(f"--runtime {name} runs fp32 only; drop --bf16 or use --runtime eager")
    if pipe.control is not None:
        raise GenimageError(f"--runtime {name} does not run spatial control (--control); use --runtime eager")
    denoiser = pipe.loaded.denoiser
    if isinstance(denoiser.network, RuntimeBackbone):
        raise GenimageError("this pipeline already runs under a runtime")
    identity = {"weights_sha256": pipe.loaded.weights_sha256, "lora": pipe.loras,
                "backbone": pipe.config.backbone, "backbone_config": pipe.config.backbone_config}
    denoiser.network = RuntimeBackbone(denoiser.network, name, identity)
    return {"name": name, "version": version}
