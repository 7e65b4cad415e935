"""``--runtime onnxruntime|openvino`` (genimage.runtimes): runs, matches eager within 1e-3, is recorded and replayed.

Each runtime's tests are skipped, with the reason, where its package is not installed
(``pip install 'genimage[onnxruntime]'`` / ``'genimage[openvino]'``). No timing is asserted.

The runtimes' native libraries (their own thread pools) loaded into the pytest process made a
later, unrelated test segfault, so this module runs in a child pytest process
(:func:`test_runtimes_in_a_child_process`); its tests proper run only there.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.errors import GenimageError
from genimage.provenance.record import read_record

runner = CliRunner()


def _needs(runtime: str):
    missing = [p for p in (runtime, "onnx") if importlib.util.find_spec(p) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{' and '.join(missing)} not installed "
                                                    f"(pip install 'genimage[{runtime}]')")


RUNTIMES = [pytest.param(r, marks=_needs(r)) for r in ("onnxruntime", "openvino")]
_CHILD = os.environ.get("GENIMAGE_RUNTIME_CHILD") == "1"


def test_runtimes_in_a_child_process():
    if _CHILD:
        pytest.skip("this is the child process")
    if all(importlib.util.find_spec(p) is None for p in ("onnxruntime", "openvino")):
        pytest.skip("neither onnxruntime nor openvino is installed (pip install 'genimage[onnxruntime]')")
    env = {**os.environ, "GENIMAGE_RUNTIME_CHILD": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


@pytest.fixture(autouse=True)
def _only_in_the_child(request):
    if not _CHILD and request.node.name != "test_runtimes_in_a_child_process":
        pytest.skip("runs in the child process (test_runtimes_in_a_child_process)")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENIMAGE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_unet_dir(tmp_path_factory):
    """A tiny class-conditional UNet on 8 px, trained for 2 steps."""
    from tiny import tiny_model_config, train_tiny

    out = tmp_path_factory.mktemp("tiny_unet")
    train_tiny(out, steps=2, model_config=tiny_model_config("unet"))
    return out


def _images(folder, runtime, **kw):
    from genimage.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(folder).use_runtime(runtime)
    opts = pipe.options(bf16=False)
    return pipe(options=opts, **kw), pipe


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("which", ["unet", "dit"])
def test_runtime_matches_eager_on_a_class_model(runtime, which, tiny_unet_dir, tiny_model_dir, tmp_path):
    folder = tiny_unet_dir if which == "unet" else tiny_model_dir
    kw = dict(seeds=[0, 1, 2], labels=[0, 1, 2], batch_size=2)  # batches of 2 and 1: two exported shapes
    eager, _ = _images(folder, "eager", **kw)
    other, pipe = _images(folder, runtime, **kw)
    assert float((other - eager).abs().max()) < 1e-3
    assert pipe.runtime["name"] == runtime
    assert len(list((tmp_path / "cache" / "runtimes").glob("*.onnx"))) == 2
    again, _ = _images(folder, runtime, **kw)  # from the cached exports
    assert torch.equal(again, other)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_generate_with_runtime_records_it_and_replay_says_not_bit_exact(runtime, tiny_text_model_dir, tmp_path):
    base = ["generate", "a red circle", "--model", str(tiny_text_model_dir), "--guidance", "3"]
    assert runner.invoke(app, base + ["-o", str(tmp_path / "eager.png")]).exit_code == 0
    res = runner.invoke(app, base + ["-o", str(tmp_path / "rt.png"), "--runtime", runtime])
    assert res.exit_code == 0, res.output
    record = read_record(tmp_path / "rt.png")
    assert record.runtime["name"] == runtime and record.runtime["version"]
    assert read_record(tmp_path / "eager.png").runtime is None
    assert '"runtime"' not in read_record(tmp_path / "eager.png").to_json()  # eager records keep their form
    res = runner.invoke(app, ["replay", str(tmp_path / "rt.png")])
    assert res.exit_code == 0, res.output  # the same runtime on the same machine and threads
    assert "not bit-exact with eager" in res.output
    res = runner.invoke(app, ["replay", str(tmp_path / "rt.png"), "--runtime", "eager"])
    assert f"made with runtime {runtime}" in res.output and "replayed with eager" in res.output
    assert res.exit_code in (0, 1), res.output  # pixels may differ by a level: reported, not an error


def test_runtime_errors(tiny_text_model_dir, tmp_path, monkeypatch):
    base = ["generate", "x", "--model", str(tiny_text_model_dir), "-o", str(tmp_path / "o.png")]
    for args, expected in [
        (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
        (["--runtime", "onnxruntime", "--bf16"], "fp32 only"),
    ]:
        res = runner.invoke(app, base + args)
        assert res.exit_code == 2 and expected in res.output, (args, res.output)
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["sample", "--model", "photo-autoencoder", "-n", "1", "--out-dir", str(tmp_path / "a"),
                              "--runtime", "openvino"])  # a one-pass family has no backbone to swap
    assert res.exit_code == 2 and "applies to diffusion models" in res.output, res.output
    from genimage.runtimes import recorded_runtime

    assert recorded_runtime(None) == "eager" and recorded_runtime({"name": "openvino", "version": "x"}) == "openvino"
    for bad in ("onnxruntime", {"name": 3}, {"name": "tensorrt"}):  # a hand-edited record: one clear error
        with pytest.raises(GenimageError, match="names none of"):
            recorded_runtime(bad)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    res = runner.invoke(app, base + ["--runtime", "onnxruntime"])
    assert res.exit_code == 2 and "pip install 'genimage[onnxruntime]'" in res.output, res.output
