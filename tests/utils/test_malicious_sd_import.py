"""Malicious Stable-Diffusion-format models (the import of genimage.interop.sd_import):
diffusers folders and single-file checkpoints carrying pickle payloads (as ``.bin`` /
``.ckpt`` / ``.pt``, named ``.safetensors`` inside ``unet/``, ``vae/``, ``text_encoder/``,
beside good weights) or configs that ask for custom code (``auto_map``,
``trust_remote_code``, a ``.py`` file). Each is refused by content in one line through the
Python API and the CLI, and the sentinel the payloads would write never appears."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from payloads import payloads
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sd_tiny import write_single_file, write_tiny_sd  # noqa: E402

from genimage.cli.main import app  # noqa: E402
from genimage.errors import GenimageError  # noqa: E402
from genimage.pipeline import Pipeline  # noqa: E402

runner = CliRunner()
_KINDS = sorted(payloads(Path("/nonexistent")))
_WEIGHTS = {"unet": "unet/diffusion_pytorch_model", "vae": "vae/diffusion_pytorch_model",
            "text_encoder": "text_encoder/model"}
_REFUSED = ("pickle", "not a safetensors", "not a valid safetensors", "custom code", "Python code")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """``(folder, single_file)``: a tiny SD 1.x-style diffusers folder (configs only once the
    single file is moved out) and the same weights as one CompVis-layout file."""
    from diffusers import StableDiffusionPipeline

    folder = write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
    dpipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    single = write_single_file(dpipe, tmp_path_factory.mktemp("single") / "tiny-sd.safetensors")
    assert Pipeline.from_pretrained(folder) is not None  # the clean folder loads (positive control)
    return folder, single


def _refused(source: Path, sentinel: Path, cli: bool = True) -> None:
    with pytest.raises(GenimageError) as info:
        Pipeline.from_pretrained(source)
    message = str(info.value)
    assert "\n" not in message and any(r in message for r in _REFUSED), message
    if cli:
        for args in (["generate", "a red cat", "--model", str(source), "--steps", "1", "-o", str(sentinel.parent / "o.png")],
                     ["info", str(source)]):
            res = runner.invoke(app, args)
            assert res.exit_code == 2 and "Traceback" not in res.output, res.output
            errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
            assert len(errors) == 1 and any(r in errors[0] for r in _REFUSED), res.output
    assert not sentinel.exists()


@pytest.mark.parametrize("part", sorted(_WEIGHTS))
@pytest.mark.parametrize("kind", _KINDS)
def test_a_pickle_named_safetensors_in_a_part_is_refused(sd, tmp_path, part, kind):
    sentinel = tmp_path / "sentinel"
    folder = shutil.copytree(sd[0], tmp_path / "m")
    (folder / f"{_WEIGHTS[part]}.safetensors").write_bytes(payloads(sentinel)[kind])
    _refused(folder, sentinel, cli=kind in ("os.system-protocol2", "torch.save-zip", "safetensors-prefix-then-pickle"))


@pytest.mark.parametrize("part", sorted(_WEIGHTS))
@pytest.mark.parametrize("suffix", [".bin", ".ckpt", ".pt"])
@pytest.mark.parametrize("beside", [False, True], ids=["instead", "beside"])
def test_pickle_weights_in_a_part_are_refused_alone_or_beside_safetensors(sd, tmp_path, part, suffix, beside):
    sentinel = tmp_path / "sentinel"
    folder = shutil.copytree(sd[0], tmp_path / "m")
    if not beside:
        (folder / f"{_WEIGHTS[part]}.safetensors").unlink()
    (folder / f"{_WEIGHTS[part]}{suffix}").write_bytes(payloads(sentinel)["torch.save-zip"])
    _refused(folder, sentinel, cli=False)


def _json_edit(path: str, key: str, value):
    def edit(folder: Path):
        data = json.loads((folder / path).read_text())
        data[key] = value
        (folder / path).write_text(json.dumps(data))
    return edit


_CODE_CASES = {
    "auto_map-text_encoder-config": _json_edit("text_encoder/config.json", "auto_map", {"AutoModel": "evil.Evil"}),
    "auto_map-tokenizer": _json_edit("tokenizer/tokenizer_config.json", "auto_map", {"AutoTokenizer": ["evil.T", None]}),
    "trust_remote_code-model_index": _json_edit("model_index.json", "trust_remote_code", True),
    "custom_pipelines-model_index": _json_edit("model_index.json", "custom_pipelines", ["evil_pipeline"]),
    "auto_map-unet-config": _json_edit("unet/config.json", "auto_map", {"AutoModel": "evil.Evil"}),
    "python-file-top": lambda f: (f / "pipeline.py").write_text("open('/tmp/x', 'w')\n"),
    "python-file-text_encoder": lambda f: (f / "text_encoder" / "modeling_evil.py").write_text("import os\n"),
    "ckpt-top-level": lambda f: (f / "model.ckpt").write_bytes(payloads(f.parent / "sentinel")["os.system-protocol4"]),
    "gzip-pickle-in-scheduler": lambda f: (f / "scheduler" / "state.bin").write_bytes(
        payloads(f.parent / "sentinel")["gzip-pickle"]),
}


@pytest.mark.parametrize("case", sorted(_CODE_CASES))
def test_configs_asking_for_code_or_stray_pickles_are_refused(sd, tmp_path, case):
    folder = shutil.copytree(sd[0], tmp_path / "m")
    _CODE_CASES[case](folder)
    _refused(folder, tmp_path / "sentinel", cli=case in ("auto_map-tokenizer", "ckpt-top-level"))


@pytest.mark.parametrize("name", ["model.safetensors", "model.ckpt", "model.bin", "model.pt"])
@pytest.mark.parametrize("kind", _KINDS)
def test_a_single_file_payload_is_refused(sd, tmp_path, name, kind):
    sentinel = tmp_path / "sentinel"
    folder = shutil.copytree(sd[0], tmp_path / "m")
    for part in _WEIGHTS:  # a configs-only folder around the single file, as the import expects
        (folder / f"{_WEIGHTS[part]}.safetensors").unlink()
    (folder / name).write_bytes(payloads(sentinel)[kind])
    _refused(folder / name, sentinel, cli=kind == "os.system-protocol2")


@pytest.mark.parametrize("case", ["auto_map-tokenizer", "auto_map-text_encoder-config", "ckpt-top-level"])
def test_a_good_single_file_in_a_folder_that_asks_for_code_is_refused(sd, tmp_path, case):
    folder = shutil.copytree(sd[0], tmp_path / "m")
    for part in _WEIGHTS:
        (folder / f"{_WEIGHTS[part]}.safetensors").unlink()
    single = Path(shutil.copy(sd[1], folder / "tiny-sd.safetensors"))
    assert Pipeline.from_pretrained(single) is not None  # loads before the edit
    _CODE_CASES[case](folder)
    _refused(single, tmp_path / "sentinel", cli=False)


def test_info_shows_a_clean_folder_and_single_file(sd, tmp_path):
    """The positive control of the CLI cases above (``info`` used to answer every SD model
    with ``unknown backbone 'sd-unet'``)."""
    folder = shutil.copytree(sd[0], tmp_path / "m")
    single = Path(shutil.copy(sd[1], folder / "tiny-sd.safetensors"))
    for source in (folder, single):
        res = runner.invoke(app, ["info", str(source)])
        assert res.exit_code == 0 and "parameters: " in res.output and '"backbone": "sd-unet"' in res.output, res.output
