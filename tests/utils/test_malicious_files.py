"""Malicious pickles planted in model, run, checkpoint and text-encoder folders, pushed
through every loading path (Python API and CLI): each is refused in one line, and the
sentinel file the payloads would write never appears."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from payloads import NAMES, payloads
from tiny import tiny_dataset, tiny_train_config
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.errors import GenimageError
from genimage.models.config import ModelConfig
from genimage.training import checkpoint as ckpt
from genimage.training.loop import Trainer
from genimage.utils.weights import load_safetensors

runner = CliRunner()
_KINDS = sorted(payloads(Path("/nonexistent")))


def test_the_payloads_really_run_when_unpickled(tmp_path):
    """Positive control: unpickling a payload writes its sentinel, so its absence below means
    nothing was unpickled."""
    sentinel = tmp_path / "control"
    pickle.loads(payloads(sentinel)["builtins.exec"])
    assert sentinel.read_text() == "pwned"
    assert len(_KINDS) >= 12


def _one_error_line(res, *expected: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert any(e in errors[0] for e in expected), errors[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", _KINDS)
def test_load_safetensors_refuses_every_payload_by_content(tmp_path, kind, name):
    sentinel = tmp_path / "sentinel"
    path = tmp_path / name
    path.write_bytes(payloads(sentinel)[kind])
    with pytest.raises(GenimageError) as info:
        load_safetensors(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not sentinel.exists()


def _model_folder(src, dst, payload: bytes, weights_name: str = "model.safetensors"):
    """A copy of model folder ``src`` whose weights are ``payload`` (under ``weights_name``)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "config.json", dst / "config.json")
    (dst / weights_name).write_bytes(payload)
    return dst


@pytest.fixture(scope="module")
def sample_png(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("png")
    res = runner.invoke(app, ["sample", "--model", str(tiny_model_dir), "-n", "1", "--steps", "2", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    return out / "0000.png"


@pytest.mark.parametrize("kind", _KINDS)
def test_a_model_folder_with_a_payload_is_refused_on_every_path(tiny_model_dir, sample_png, tmp_path, kind):
    from genimage.families.io import load_generator
    from genimage.models.io import load_model
    from genimage.pipeline import Pipeline

    sentinel = tmp_path / "sentinel"
    latest = ckpt.find_latest_checkpoint(tiny_model_dir / "checkpoints")
    evil = str(_model_folder(latest, tmp_path / "evil", payloads(sentinel)[kind]))
    for load in (load_model, load_generator, Pipeline.from_pretrained):
        with pytest.raises(GenimageError, match="pickle|not a safetensors|not a valid safetensors"):
            load(evil)
    o = str(tmp_path / "o")
    for args in (["info", evil], ["sample", "--model", evil, "-n", "1", "--out-dir", o],
                 ["generate", "a red circle", "--model", evil, "--out-dir", o],
                 ["edit", str(sample_png), "--model", evil, "--out-dir", o],
                 ["replay", str(sample_png), "--model", evil],
                 ["eval", "model", evil, "--data", "builtin:digits", "-n", "8", "--out", o],
                 ["eval", "prompts", "--model", evil, "-n", "2", "--output", o + "/p.json"]):
        _one_error_line(runner.invoke(app, args), "pickle", "not a safetensors", "not a valid safetensors")
    assert not sentinel.exists()


_TRAIN = ["train", "--data", "builtin:digits", "--length", "32", "--preset", "tiny", "--steps", "1", "--batch-size", "4",
          "--no-progress"]


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """1-step runs on digits whose configs fit --init-from / --teacher and --autoencoder."""
    root = tmp_path_factory.mktemp("digits_runs")
    for name, extra in (("diffusion", []), ("autoencoder", ["--family", "autoencoder", "--cond", "none"])):
        res = runner.invoke(app, _TRAIN + extra + ["--out", str(root / name)])
        assert res.exit_code == 0, res.output
    return {name: ckpt.find_latest_checkpoint(root / name / "checkpoints") for name in ("diffusion", "autoencoder")}


@pytest.mark.parametrize("kind", ["os.system-protocol2", "builtins.eval", "torch.save-zip", "os.system-protocol0"])
def test_training_refuses_payloads_as_init_teacher_autoencoder_and_resume_state(tiny_model_dir, digits_runs, tmp_path,
                                                                                 kind):
    sentinel = tmp_path / "sentinel"
    payload = payloads(sentinel)[kind]
    evil = str(_model_folder(digits_runs["diffusion"], tmp_path / "evil", payload))
    evil_ae = str(_model_folder(digits_runs["autoencoder"], tmp_path / "evil_ae", payload))
    refused = ("pickle", "not a safetensors", "not a valid safetensors")
    _one_error_line(runner.invoke(app, _TRAIN + ["--out", str(tmp_path / "r1"), "--init-from", evil]), *refused)
    _one_error_line(runner.invoke(app, _TRAIN + ["--out", str(tmp_path / "r2"), "--family", "consistency",
                                                 "--teacher", evil]), *refused)
    _one_error_line(runner.invoke(app, _TRAIN + ["--out", str(tmp_path / "r3"), "--autoencoder", evil_ae]), *refused)
    # a run folder whose checkpoint's training state (and, for sampling, its weights) is a payload
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    step = ckpt.find_latest_checkpoint(run / "checkpoints")
    for name in ("network.safetensors", "optimizer.safetensors", "model.safetensors"):
        original = (step / name).read_bytes()
        (step / name).write_bytes(payload)
        with pytest.raises(GenimageError, match="|".join(refused)):
            Trainer(ModelConfig.load(step), tiny_train_config(12), tiny_dataset(), run, resume=True)
        if name == "model.safetensors":
            _one_error_line(runner.invoke(app, ["sample", "--model", str(run), "-n", "1", "--out-dir",
                                                str(tmp_path / "o")]), *refused)
        (step / name).write_bytes(original)
    assert not sentinel.exists()


@pytest.mark.parametrize("kind", ["os.system-protocol0", "os.system-protocol4", "torch.save-zip"])
def test_a_payload_named_config_json_or_trainer_json_is_refused(tiny_model_dir, tmp_path, kind):
    """A binary pickle where a JSON file belongs (found by this matrix: a non-UTF-8 config.json
    gave a UnicodeDecodeError traceback on every path, a damaged trainer.json one on --resume)."""
    sentinel = tmp_path / "sentinel"
    payload = payloads(sentinel)[kind]
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    step = ckpt.find_latest_checkpoint(run / "checkpoints")
    good = (step / "config.json").read_bytes()
    (step / "config.json").write_bytes(payload)
    for args in (["info", str(run)], ["sample", "--model", str(run), "-n", "1", "--out-dir", str(tmp_path / "o")],
                 ["serve", "--model-dir", f"evil={run}", "--device", "cpu"]):
        _one_error_line(runner.invoke(app, args), "is not valid JSON")
    (step / "config.json").write_bytes(good)
    (step / "trainer.json").write_bytes(payload)
    with pytest.raises(GenimageError, match="trainer.json is not valid JSON") as info:
        Trainer(ModelConfig.load(step), tiny_train_config(12), tiny_dataset(), run, resume=True)
    assert "\n" not in str(info.value)
    assert not sentinel.exists()


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "model.bin"])
def test_pickle_named_weights_next_to_a_config_are_never_read(tiny_model_dir, tmp_path, name):
    sentinel = tmp_path / "sentinel"
    latest = ckpt.find_latest_checkpoint(tiny_model_dir / "checkpoints")
    evil = _model_folder(latest, tmp_path / "evil", payloads(sentinel)["os.system-protocol4"], weights_name=name)
    _one_error_line(runner.invoke(app, ["sample", "--model", str(evil), "-n", "1"]), "not found")
    _one_error_line(runner.invoke(app, ["sample", "--model", str(evil / name), "-n", "1"]), "not a single file",
                    "is a pickle checkpoint")
    assert not sentinel.exists()


# ---------------------------------------------------------------- text encoders

def _tiny_text_encoder(folder):
    """A tiny BERT text encoder folder (tokenizer of the bundled MiniLM) saved as safetensors."""
    import transformers

    from genimage.conditioning.text import TextEncoder

    tok = TextEncoder.from_name("minilm", max_length=8).tokenizer
    tok.save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def good_encoder(tmp_path_factory):
    return _tiny_text_encoder(tmp_path_factory.mktemp("enc"))


def _variant(good, dst, edit):
    shutil.copytree(good, dst)
    edit(dst)
    return dst


def _swap_weights(payload):
    def edit(d):
        (d / "model.safetensors").unlink()
        (d / "pytorch_model.bin").write_bytes(payload)
    return edit


def _json_key(name, key, value):
    def edit(d):
        data = json.loads((d / name).read_text())
        data[key] = value
        (d / name).write_text(json.dumps(data))
    return edit


def test_a_safe_local_text_encoder_still_loads(good_encoder):
    from genimage.conditioning.text import TextEncoder

    enc = TextEncoder.from_name(str(good_encoder), max_length=8)
    assert enc.encode(["a red circle"])["text"].shape[-1] == 16


@pytest.mark.parametrize("case,expected", [
    ("pickle-only", "pickle file"),
    ("pickle-beside-safetensors", "pickle file"),
    ("protocol0-bin", "not a safetensors file"),
    ("auto_map-config", "custom code"),
    ("auto_map-tokenizer", "custom code"),
    ("python-file", "ships Python code"),
    ("pickle-named-safetensors", "pickle file"),
])
def test_dangerous_text_encoder_folders_are_refused_before_transformers(good_encoder, tmp_path, case, expected):
    from genimage.conditioning.text import TextEncoder

    sentinel = tmp_path / "sentinel"
    p = payloads(sentinel)
    edits = {
        "pickle-only": _swap_weights(p["torch.save-zip"]),
        "pickle-beside-safetensors": lambda d: (d / "pytorch_model.bin").write_bytes(p["os.system-protocol2"]),
        "protocol0-bin": lambda d: (d / "training_args.bin").write_bytes(p["os.system-protocol0"]),
        "auto_map-config": _json_key("config.json", "auto_map", {"AutoModel": "evil.EvilModel"}),
        "auto_map-tokenizer": _json_key("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["evil.Tok", None]}),
        "python-file": lambda d: (d / "evil.py").write_text(f"open({str(sentinel)!r}, 'w')\n"),
        "pickle-named-safetensors": lambda d: (d / "model.safetensors").write_bytes(p["os.system-protocol4"]),
    }
    folder = _variant(good_encoder, tmp_path / "enc", edits[case])
    with pytest.raises(GenimageError, match=expected) as info:
        TextEncoder.from_name(str(folder), max_length=8)
    assert "\n" not in str(info.value)
    assert not sentinel.exists()


def test_a_text_encoder_payload_is_refused_from_the_cli_and_from_a_model_config(tiny_text_model_dir, good_encoder,
                                                                                 tmp_path):
    sentinel = tmp_path / "sentinel"
    evil = _variant(good_encoder, tmp_path / "enc", _swap_weights(payloads(sentinel)["os.system-protocol2"]))
    res = runner.invoke(app, ["train", "--data", "builtin:shapes", "--length", "16", "--image-size", "16", "--preset",
                              "tiny", "--steps", "1", "--batch-size", "4", "--cond", "text", "--no-progress",
                              "--text-encoder", str(evil), "--out", str(tmp_path / "r")])
    _one_error_line(res, "pickle file")
    model = tmp_path / "model"  # a model folder whose config.json points its text encoder at the evil folder
    latest = ckpt.find_latest_checkpoint(tiny_text_model_dir / "checkpoints")
    shutil.copytree(latest, model)
    config = json.loads((model / "config.json").read_text())
    config["text_encoder"] = str(evil)
    (model / "config.json").write_text(json.dumps(config))
    for args in (["sample", "--model", str(model), "-n", "1", "--prompt", "a red circle", "--out-dir", str(tmp_path / "o")],
                 ["generate", "a red circle", "--model", str(model), "--out-dir", str(tmp_path / "o")]):
        _one_error_line(runner.invoke(app, args), "pickle file")
    assert not sentinel.exists()
