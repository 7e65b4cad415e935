"""The web service through FastAPI's test client: the page, models, generation (JSON and
PNG), editing uploads, records that replay, and errors as 400 with a message."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from genimage.pipeline import replay
from genimage.provenance.record import read_record
from genimage.serve.app import create_app
from genimage.serve.studio import Studio


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(Studio(default_model="digits", device="cpu", max_images=4)),
                      base_url="http://127.0.0.1:8000", headers={"X-Genimage": "1"})


def _png(data: bytes, path):
    path.write_bytes(data)
    return path


def test_page_health_and_models(client):
    page = client.get("/")
    script = client.get("/page.js")
    assert page.status_code == 200 and "<title>genimage</title>" in page.text and "/api/jobs" in script.text
    assert "http" not in page.text + script.text  # no external scripts or styles: the page works offline
    assert "innerHTML" not in page.text + script.text  # server text goes in with textContent only
    assert client.get("/docs").status_code == 404  # swagger's page would load scripts from a CDN
    assert "/api/generate" in client.get("/openapi.json").json()["paths"]
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu" and health["default_model"] == "digits"
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert models["digits"]["conditioning"] == "class" and models["digits"]["default"]
    assert models["shapes"]["conditioning"] == "text" and models["shapes"]["image_size"] == 32
    assert models["digits-2step"]["defaults"]["steps"] == 2


def test_generate_json_replays_bit_for_bit(client, tmp_path):
    res = client.post("/api/generate", json={"label": "7", "seed": 3, "n": 2, "steps": 4})
    assert res.status_code == 200, res.text
    body = res.json()
    assert [im["seed"] for im in body["images"]] == [3, 4] and body["model"] == "digits"
    path = _png(base64.b64decode(body["images"][1]["png_base64"]), tmp_path / "a.png")
    record = read_record(path)
    assert (record.seed, record.label, record.steps) == (4, 7, 4) and body["images"][1]["record"]["seed"] == 4
    assert replay(path).match


def test_generate_png_and_a_text_model(client, tmp_path):
    res = client.get("/api/generate.png", params={"label": "3", "seed": 1, "steps": 3})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert read_record(_png(res.content, tmp_path / "d.png")).label == 3
    res = client.get("/api/generate.png", params={"model": "shapes", "prompt": "a red circle", "steps": 4})
    assert res.status_code == 200
    record = read_record(_png(res.content, tmp_path / "s.png"))
    assert record.prompt == "a red circle" and Image.open(tmp_path / "s.png").size == (32, 32)


@pytest.mark.parametrize("body,message", [
    ({"n": 5}, "between 1 and 4"),
    ({"label": "eleven"}, "is not a class of this model"),
    ({"prompt": "a red circle"}, "send a label"),
    ({"model": "nope"}, "nope"),
    ({"sampler": "magic"}, "magic"),
    ({"model": "shapes", "label": "3"}, "takes a text prompt"),
])
def test_errors_are_400_with_a_message(client, body, message):
    res = client.post("/api/generate", json=body)
    assert res.status_code == 400 and message in res.json()["error"], res.text


def test_edit_uploads_inpaint_and_img2img(client, tmp_path):
    made = client.post("/api/generate", json={"label": "1", "seed": 0, "steps": 4}).json()["images"][0]
    source = base64.b64decode(made["png_base64"])
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    res = client.post("/api/edit", files={"image": ("in.png", source, "image/png"), "mask": ("m.png", buf.getvalue(), "image/png")},
                      data={"label": "7", "seed": "5", "n": "2", "steps": "4", "resample": "2"})
    assert res.status_code == 200, res.text
    images = res.json()["images"]
    assert images[0]["record"]["edit"]["mode"] == "inpaint" and images[0]["record"]["edit"]["resample"] == 2
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(images[0]["png_base64"]))))
    assert np.array_equal(out[:, :4], np.asarray(Image.open(io.BytesIO(source)))[:, :4])  # kept half exactly
    (tmp_path / "in.png").write_bytes(source)
    (tmp_path / "m.png").write_bytes(buf.getvalue())
    path = _png(base64.b64decode(images[1]["png_base64"]), tmp_path / "e.png")
    assert replay(path, init=tmp_path / "in.png", mask=tmp_path / "m.png").match
    res = client.post("/api/edit", files={"image": ("in.png", source, "image/png")},
                      data={"label": "7", "strength": "0.5", "steps": "4"})
    assert res.status_code == 200 and res.json()["images"][0]["record"]["edit"]["mode"] == "img2img"


def test_edit_errors(client):
    res = client.post("/api/edit", files={"image": ("x.png", b"not an image", "image/png")}, data={"label": "1"})
    assert res.status_code == 400 and "cannot read the upload as an image" in res.json()["error"]
    good = client.get("/api/generate.png", params={"label": "2"}).content
    res = client.post("/api/edit", files={"image": ("x.png", good, "image/png")}, data={"steps": "4"})
    assert res.status_code == 200 and res.json()["images"][0]["record"]["label"] is None  # unconditional edit
    res = client.post("/api/edit", files={"image": ("x.png", good, "image/png")},
                      data={"label": "1", "resample": "3"})
    assert res.status_code == 400 and "applies to inpainting" in res.json()["error"]


def test_the_cli_refuses_a_bad_port_or_model():
    from typer.testing import CliRunner

    from genimage.cli.main import app

    res = CliRunner().invoke(app, ["serve", "--port", "70000"])
    assert res.exit_code == 2 and "--port must be in 1..65535" in res.output
    res = CliRunner().invoke(app, ["serve", "--model", "no-such-model"])
    assert res.exit_code == 2 and "no-such-model" in res.output
