"""Malicious model files and uploads through the web service: ``genimage serve --model-dir
NAME=FOLDER`` with a payload model, run or Stable Diffusion folder is refused at start in one
line (the server never starts) when it is the default model, or at first use with a one-line
400 (the other models keep working) otherwise; pickles uploaded as images, as a PNG's record
or as a record naming a payload folder are refused; the sentinel never appears."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from payloads import payloads
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from genimage.cli.main import app
from genimage.serve.app import create_app
from genimage.serve.studio import Studio
from genimage.training import checkpoint as ckpt

runner = CliRunner()
_KINDS = sorted(payloads(Path("/nonexistent")))
_REFUSED = ("pickle", "not a safetensors", "not a valid safetensors", "custom code")


@pytest.fixture()
def no_uvicorn(monkeypatch):
    """Fail the test if ``genimage serve`` ever gets as far as starting its server."""
    import uvicorn

    def run(self, *a, **k):
        raise AssertionError("the server started with a malicious default model")

    monkeypatch.setattr(uvicorn.Server, "run", run)


def _payload_model(tiny_model_dir: Path, dst: Path, payload: bytes) -> Path:
    latest = ckpt.find_latest_checkpoint(tiny_model_dir / "checkpoints")
    dst.mkdir(parents=True)
    shutil.copy(latest / "config.json", dst / "config.json")
    (dst / "model.safetensors").write_bytes(payload)
    return dst


def _payload_run(tiny_model_dir: Path, dst: Path, payload: bytes) -> Path:
    """A copy of a run folder whose latest checkpoint's weights are ``payload``."""
    shutil.copytree(tiny_model_dir, dst)
    latest = ckpt.find_latest_checkpoint(dst / "checkpoints")
    (latest / "model.safetensors").write_bytes(payload)
    return dst


def _one_error_line(res, *expected: str) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and any(e in errors[0] for e in expected), res.output
    return errors[0]


@pytest.mark.parametrize("kind", _KINDS)
def test_serve_refuses_a_payload_default_model_at_start(tiny_model_dir, tmp_path, no_uvicorn, kind):
    sentinel = tmp_path / "sentinel"
    payload = payloads(sentinel)[kind]
    for make in (_payload_model, _payload_run):
        folder = make(tiny_model_dir, tmp_path / make.__name__, payload)
        res = runner.invoke(app, ["serve", "--model-dir", f"evil={folder}", "--model", "evil", "--device", "cpu",
                                  "--port", "8765"])
        _one_error_line(res, *_REFUSED)
    assert not sentinel.exists()


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
    from sd_tiny import write_tiny_sd

    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.mark.parametrize("where", ["unet/diffusion_pytorch_model.safetensors", "text_encoder/pytorch_model.bin",
                                   "model.ckpt"])
def test_serve_refuses_a_stable_diffusion_folder_with_a_payload_at_start(sd_folder, tmp_path, no_uvicorn, where):
    sentinel = tmp_path / "sentinel"
    folder = shutil.copytree(sd_folder, tmp_path / "sd")
    (folder / where).write_bytes(payloads(sentinel)["torch.save-zip"])
    for default in ("evil", "digits"):  # the catalog reads every model's config at start
        res = runner.invoke(app, ["serve", "--model-dir", f"evil={folder}", "--model", default, "--device", "cpu"])
        _one_error_line(res, "pickle file")
    tok = folder / "tokenizer" / "tokenizer_config.json"
    (folder / where).unlink()
    shutil.copytree(sd_folder / where.split("/")[0], folder / where.split("/")[0], dirs_exist_ok=True) \
        if "/" in where else None
    tok.write_text(json.dumps({**json.loads(tok.read_text()), "auto_map": {"AutoTokenizer": ["evil.T", None]}}))
    res = runner.invoke(app, ["serve", "--model-dir", f"evil={folder}", "--device", "cpu"])
    _one_error_line(res, "custom code")
    assert not sentinel.exists()


@pytest.mark.parametrize("kind", _KINDS)
def test_a_payload_model_that_is_not_the_default_is_refused_at_first_use(tiny_model_dir, tmp_path, kind, caplog):
    sentinel = tmp_path / "sentinel"
    evil = _payload_model(tiny_model_dir, tmp_path / "evil", payloads(sentinel)[kind])
    client = TestClient(create_app(Studio("digits", "cpu", 2, model_dirs={"evil": evil})),
                        base_url="http://127.0.0.1:8000", headers={"X-Genimage": "1"})
    assert "evil" in [m["name"] for m in client.get("/api/models").json()]
    for _ in range(2):  # refused every time, not only the first
        res = client.post("/api/generate", json={"model": "evil", "label": "1", "steps": 2})
        assert res.status_code == 400, res.text
        message = res.json()["error"]
        assert message == ("model 'evil' cannot be loaded: the service refused its files or they are damaged "
                           "(the server's log says why)")  # no server path in the answer
        res = client.post("/api/jobs", json={"model": "evil", "label": "1", "steps": 2})
        assert res.status_code == 400 and res.json()["error"] == message, res.text
    logged = [r.getMessage() for r in caplog.records if r.name == "genimage.serve"]
    assert len(logged) == 4 and all(any(r in m for r in _REFUSED) and str(evil) in m for m in logged), logged
    assert client.post("/api/generate", json={"label": "1", "steps": 2}).status_code == 200  # the worker is fine
    assert not sentinel.exists()


def _png_with_record(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    from genimage.provenance.record import PNG_KEY

    info.add_text(PNG_KEY, text)
    buf = io.BytesIO()
    Image.new("L", (8, 8), 100).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_uploads_carrying_pickles_are_refused(tiny_model_dir, tmp_path):
    sentinel = tmp_path / "sentinel"
    p = payloads(sentinel)
    client = TestClient(create_app(Studio("digits", "cpu", 2)), base_url="http://127.0.0.1:8000",
                        headers={"X-Genimage": "1"})
    good = _png_with_record("{}")
    for kind in _KINDS:  # a pickle dressed as an image, on every upload field
        for route, files in (("/api/edit", {"image": ("x.png", p[kind], "image/png")}),
                             ("/api/edit", {"image": ("x.png", good, "image/png"), "mask": ("m.png", p[kind], "image/png")}),
                             ("/api/detect", {"image": ("x.png", p[kind], "image/png")}),
                             ("/api/jobs/replay", {"png": ("x.png", p[kind], "image/png")}),
                             ("/api/jobs/replay", {"png": ("x.png", good, "image/png"), "image": ("i.png", p[kind], "image/png")})):
            res = client.post(route, files=files, data={"label": "1"} if route == "/api/edit" else None)
            assert res.status_code == 400 and "error" in res.json(), (kind, route, res.text)
    # a record that is a pickle (as text), and one whose model is a payload folder the service does not serve
    evil = _payload_model(tiny_model_dir, tmp_path / "evil", p["os.system-protocol2"])
    made = client.post("/api/generate", json={"label": "1", "steps": 2})
    record = made.json()["images"][0]["record"]  # a real record of the served model, to alter
    for text in (p["os.system-protocol0"].decode("latin-1"), json.dumps({**record, "model": str(evil)}),
                 json.dumps({**record, "model": "evil"})):
        res = client.post("/api/jobs/replay", files={"png": ("x.png", _png_with_record(text), "image/png")})
        assert res.status_code == 400 and "\n" not in res.json()["error"], res.text
    assert not sentinel.exists()
