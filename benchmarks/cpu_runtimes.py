"""One backbone forward on the CPU under torch eager, torch.compile, ONNX Runtime and OpenVINO.

genimage issue 17 item 5: "where a faster CPU runtime helps (ONNX Runtime or OpenVINO),
measure it side by side on the same network". Two networks, both at network batch 16:

* ``shapes``: the bundled ``shapes`` model's UNet (1.57M parameters, 4x8x8 latents,
  768-d text states of 16 tokens), called as classifier-free guidance calls it: 8
  conditional rows (prompts of 1-16 tokens) and 8 unconditional rows (mask all False);
* ``unet4m``: the folder recipe's largest candidate (``recipe.CANDIDATES[0]``, UNet
  64-128-128, 4.44M parameters) on the photo autoencoder's 4x8x8 latents, unconditional.

Runtimes: eager fp32 under ``torch.no_grad()``; eager under bf16 autocast (what ``genimage
generate`` picks by default where ``bf16_is_fast`` says bf16 is fast); ``torch.compile`` (inductor, default mode);
ONNX Runtime (``torch.onnx.export`` of the traced module, CPU execution provider,
``ORT_ENABLE_ALL`` graph optimisation); OpenVINO (the same ONNX file read by
``openvino.Core.compile_model`` on ``CPU``, f32 inference precision). Every runtime runs on one
thread. After a warm-up, the runtimes are timed in interleaved rounds (one forward of each per
round, in a rotating order), so a neighbour's load hits all of them alike; the table gives
median milliseconds per forward, the ratio eager median / runtime median, the median of the
per-round ratios, and the largest absolute output difference from eager on the same inputs.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/cpu_runtimes.py [--rounds 40] [--networks shapes,unet4m]
        [--runtimes eager,eager-bf16,compile,onnxruntime,openvino] [--out benchmarks/results/cpu_runtimes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genimage.runtimes.export import PositionalBackbone  # the wrapper --runtime exports, too

BATCH = 16


def shapes_network() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], str]:
    from genimage.families.io import load_generator

    loaded = load_generator("shapes")
    net = loaded.model.denoiser.network
    cfg = net.config
    g = torch.Generator().manual_seed(0)
    half = BATCH // 2
    x = torch.randn(BATCH, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    c_noise = torch.rand(half, generator=g).repeat(2) * 1000  # the same times in both halves, as CFG does
    text = torch.randn(BATCH, cfg.max_text_len, cfg.text_dim, generator=g)
    lengths = torch.randint(1, cfg.max_text_len + 1, (half, 1), generator=g)
    mask = torch.arange(cfg.max_text_len)[None] < lengths
    mask = torch.cat([mask, torch.zeros_like(mask)])  # unconditional half: no tokens
    text[half:] = 0
    return PositionalBackbone(net, ["text", "text_mask"]).eval(), (x, c_noise, text, mask), f"shapes UNet, sha256 {loaded.weights_sha256[:12]}"


def recipe_network() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], str]:
    from genimage.models.backbones import build_backbone
    from genimage.models.presets import backbone_config
    from genimage.training.recipe import CANDIDATES

    backbone, desc, overrides = CANDIDATES[0]
    cfg = backbone_config(backbone, "small", image_size=8, channels=4, overrides=overrides)
    torch.manual_seed(0)
    net = build_backbone(backbone, cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 4, 8, 8, generator=g)
    c_noise = torch.rand(BATCH, generator=g) * 1000
    return PositionalBackbone(net, []).eval().requires_grad_(False), (x, c_noise), f"recipe candidate: {desc}, random init"


NETWORKS = {"shapes": shapes_network, "unet4m": recipe_network}


def onnx_file(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], folder: Path) -> Path:
    """Export ``module`` at the shapes of ``inputs`` (TorchScript tracer, opset 17)."""
    path = folder / "model.onnx"
    names = ["x", "c_noise", "text", "text_mask"][: len(inputs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks turned into constants
        torch.onnx.export(module, inputs, str(path), input_names=names, output_names=["out"], opset_version=17,
                          dynamo=False)
    return path


def feeds(inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return dict(zip(["x", "c_noise", "text", "text_mask"], (t.numpy() for t in inputs)))


def make_eager(module, inputs, folder):
    def run():
        with torch.no_grad():
            return module(*inputs)
    return run


def make_eager_bf16(module, inputs, folder):
    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return module(*inputs).float()
    return run


def make_compile(module, inputs, folder):
    compiled = torch.compile(module)

    def run():
        with torch.no_grad():
            return compiled(*inputs)
    return run


def make_onnxruntime(module, inputs, folder):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feed = feeds(inputs)
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def make_openvino(module, inputs, folder):
    import openvino as ov

    compiled = ov.Core().compile_model(str(folder / "model.onnx"), "CPU",
                                       {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    feed = feeds(inputs)

    def run():
        request.infer(feed)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())
    return run


RUNTIMES: dict[str, Callable] = {"eager": make_eager, "eager-bf16": make_eager_bf16, "compile": make_compile, "onnxruntime": make_onnxruntime,
                                 "openvino": make_openvino}


def bench_network(key: str, runtimes: list[str], rounds: int, warmup: int) -> dict:
    module, inputs, desc = NETWORKS[key]()
    params = sum(p.numel() for p in module.parameters())
    ref = make_eager(module, inputs, None)()
    runs, setup, errors = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if any(r in ("onnxruntime", "openvino") for r in runtimes):
            t = time.perf_counter()
            onnx_file(module, inputs, folder)
            setup["onnx_export_s"] = round(time.perf_counter() - t, 2)
        for name in runtimes:
            t = time.perf_counter()
            try:
                fn = RUNTIMES[name](module, inputs, folder)
                out = fn()  # first call: compiles / builds the session's kernels
            except Exception as exc:  # report why a runtime could not run, measure the rest
                errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                print(f"  {key}: {name} failed: {errors[name]}", flush=True)
                continue
            setup[f"{name}_first_call_s"] = round(time.perf_counter() - t, 2)
            for _ in range(warmup):
                fn()
            runs[name] = (fn, float((out.float() - ref).abs().max()))
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for i in range(rounds):
        for name in order[i % len(order):] + order[: i % len(order)]:
            t = time.perf_counter()
            runs[name][0]()
            times[name].append(time.perf_counter() - t)
    eager = statistics.median(times["eager"])
    rows = []
    for name in runs:
        med = statistics.median(times[name])
        paired = statistics.median(e / r for e, r in zip(times["eager"], times[name]))
        rows.append(dict(runtime=name, median_ms=round(med * 1e3, 2), ratio_to_eager=round(eager / med, 3),
                         median_paired_ratio=round(paired, 3), max_abs_diff=runs[name][1]))
    return dict(network=key, description=desc, params=params, batch=BATCH,
                input_shapes={n: list(t.shape) for n, t in zip(["x", "c_noise", "text", "text_mask"], inputs)},
                rows=rows, setup=setup, errors=errors)


def machine() -> dict:
    cpu = platform.processor()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnxruntime", "openvino", "onnx"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return dict(cpu=cpu, cores=os.cpu_count(), avx512="avx512f" in flags, avx2="avx2" in flags,
                load_average=[round(v, 2) for v in os.getloadavg()], threads=torch.get_num_threads(), versions=versions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--networks", default="shapes,unet4m")
    ap.add_argument("--runtimes", default="eager,eager-bf16,compile,onnxruntime,openvino")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_runtimes.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    runtimes = args.runtimes.split(",")
    for bad in [r for r in runtimes if r not in RUNTIMES] + [n for n in args.networks.split(",") if n not in NETWORKS]:
        sys.exit(f"error: unknown runtime or network {bad!r}; runtimes: {', '.join(RUNTIMES)}; networks: {', '.join(NETWORKS)}")
    if "eager" not in runtimes:
        runtimes.insert(0, "eager")
    result = dict(command=" ".join(["python", *sys.argv]), machine=machine(), rounds=args.rounds, networks=[])
    for key in args.networks.split(","):
        print(f"{key} ...", flush=True)
        res = bench_network(key, runtimes, args.rounds, args.warmup)
        result["networks"].append(res)
        print(f"{key}: {res['description']}, {res['params'] / 1e6:.2f}M parameters, batch {BATCH}")
        print(f"  {'runtime':12s} {'ms':>8s} {'x eager':>8s} {'paired':>8s} {'max |diff|':>11s}")
        for r in res["rows"]:
            print(f"  {r['runtime']:12s} {r['median_ms']:8.2f} {r['ratio_to_eager']:8.3f} {r['median_paired_ratio']:8.3f} "
                  f"{r['max_abs_diff']:11.2e}")
        for name, err in res["errors"].items():
            print(f"  {name}: not measured ({err})")
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
