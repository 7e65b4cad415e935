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


def _photo(w: int, h: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _out(image: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(image["png_base64"])))


def _replay_job(client, png: bytes, image: bytes, polls: int = 300) -> dict:
    """Submit ``POST /api/jobs/replay`` for a PNG and its input; the job's state once it ends."""
    import time

    job = client.post("/api/jobs/replay", files={"png": ("o.png", png, "image/png"),
                                                 "image": ("in.png", image, "image/png")})
    assert job.status_code == 202, job.text
    for _ in range(polls):
        body = client.get(f"/api/jobs/{job.json()['id']}").json()
        if body["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    return body


def test_edits_keep_the_uploads_size_and_outpainting_enlarges_it(client, tmp_path):
    src = _photo(48, 40)  # not the model's 32 px, not square
    res = client.post("/api/edit", files={"image": ("in.png", src, "image/png")},
                      data={"model": "shapes", "prompt": "a red circle", "strength": "0.5", "steps": "4"})
    assert res.status_code == 200, res.text
    made = res.json()["images"][0]
    assert _out(made).size == (48, 40) and made["record"]["edit"]["canvas"]["fit"] == "resize"
    res = client.post("/api/edit", files={"image": ("in.png", src, "image/png")},
                      data={"model": "shapes", "prompt": "a red circle", "extend": "16,0,16,0", "steps": "4"})
    assert res.status_code == 200, res.text
    made = res.json()["images"][0]
    out = np.asarray(_out(made).convert("RGB")).astype(int)
    assert out.shape == (40, 80, 3) and made["record"]["edit"]["canvas"]["fit"] == "windows"
    kept = out[:, 16:64] - np.asarray(Image.open(io.BytesIO(src)).convert("RGB")).astype(int)
    assert np.abs(kept).max() <= 3  # the input's pixels are kept (up to the 2-level watermark)
    (tmp_path / "in.png").write_bytes(src)
    path = _png(base64.b64decode(made["png_base64"]), tmp_path / "o.png")
    assert replay(path, init=tmp_path / "in.png").match  # the CLI replays the service's canvas edit
    body = _replay_job(client, path.read_bytes(), src, polls=200)
    assert body["state"] == "done" and body["images"][0]["match"] is True
    bad = client.post("/api/jobs/replay", files={"png": ("o.png", path.read_bytes(), "image/png"),
                                                 "image": ("x.png", _photo(48, 41), "image/png")})
    assert bad.status_code == 400 and "the uploaded image is not the input" in bad.json()["error"]


def test_window_and_tile_edits_count_against_the_job_limit(client):
    res = client.post("/api/edit", files={"image": ("in.png", _photo(32, 32), "image/png")},
                      data={"model": "shapes", "prompt": "a red circle", "extend": "0,0,300,0", "steps": "200"})
    assert res.status_code == 400 and "model-size windows/tiles" in res.json()["error"], res.text
    res = client.post("/api/edit", files={"image": ("in.png", _photo(20, 12), "image/png")},
                      data={"upscale": "2", "label": "1", "steps": "4"})
    assert res.status_code == 200, res.text
    assert _out(res.json()["images"][0]).size == (40, 24)  # F times the upload, tile by tile


def test_a_latent_model_upscales_with_the_bundled_upscaler_and_replays(client, tmp_path):
    src = _photo(20, 12)
    res = client.post("/api/edit", files={"image": ("in.png", src, "image/png")},
                      data={"model": "shapes", "upscale": "4", "seed": "5"})
    assert res.status_code == 200, res.text
    body = res.json()
    made = body["images"][0]
    assert body["model"] == "photos-x4" and made["record"]["edit"]["method"] == "superres"
    assert _out(made).size == (80, 48)  # 4 x the upload, tile by tile
    (tmp_path / "in.png").write_bytes(src)
    path = _png(base64.b64decode(made["png_base64"]), tmp_path / "o.png")
    assert replay(path, init=tmp_path / "in.png").match  # the CLI replays the service's upscale
    state = _replay_job(client, path.read_bytes(), src)
    assert state["state"] == "done" and state["images"][0]["match"] is True
    for data, message in (({"upscale": "2"}, "upscales x4 only"),
                          ({"upscale": "4", "prompt": "a red circle"}, "prompt: not used by an upscale")):
        bad = client.post("/api/edit", files={"image": ("in.png", src, "image/png")}, data={"model": "shapes", **data})
        assert bad.status_code == 400 and message in bad.json()["error"], bad.text


def test_the_cli_refuses_a_bad_port_or_model():
    from typer.testing import CliRunner

    from genimage.cli.main import app

    res = CliRunner().invoke(app, ["serve", "--port", "70000"])
    assert res.exit_code == 2 and "--port must be in 1..65535" in res.output
    res = CliRunner().invoke(app, ["serve", "--model", "no-such-model"])
    assert res.exit_code == 2 and "no-such-model" in res.output
