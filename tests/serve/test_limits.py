"""Validation before any compute: every bad request of the audit gets a 4xx with a message in
the web's words, quickly, and no job is started for it."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from genimage.serve.limits import Limits
from genimage.serve.studio import Studio


@pytest.fixture(scope="module")
def client(make_client):
    return make_client(max_upload_bytes=300_000, max_pixels=1024 * 1024)


def _jobs(client):
    return client.get("/api/health").json()["jobs"]


def _raw(client, body: str):
    return client.post("/api/generate", content=body.encode("utf-8", "surrogatepass"),
                       headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("body,status,words", [
    ({"steps": 201}, 400, "steps: at most 200"),
    ({"steps": 1000000}, 422, "steps"),
    ({"steps": 10**30}, 422, "steps"),
    ({"seed": 2**64}, 422, "seed"),
    ({"seed": -1}, 422, "seed"),
    ({"seed": 2**63 - 1, "n": 2}, 400, "seed"),
    ({"n": True}, 422, "n:"),
    ({"n": "2"}, 422, "n:"),
    ({"n": 1.5}, 422, "n:"),
    ({"n": 0}, 422, "n:"),
    ({"steps": True}, 422, "steps"),
    ({"guidance": True}, 422, "guidance"),
    ({"guidance": -1}, 422, "guidance"),
    ({"model": ""}, 422, "model"),
    ({"model": 3}, 422, "model"),
    ({"unknown": 1}, 422, "unknown: Extra inputs are not permitted"),
    ({"label": "1", "strength": 0.5}, 422, "strength"),  # not a field of a generation
    ({"prompt": "x" * 1001, "model": "shapes"}, 400, "prompt: at most 1000 characters"),
    ({"label": "\x00"}, 422, "NUL"),
    ({"label": [1]}, 422, "label"),
])
def test_bad_json_fields(client, body, status, words):
    before = _jobs(client)
    t0 = time.perf_counter()
    res = client.post("/api/generate", json=body)
    assert res.status_code == status and words in res.json()["error"], res.text
    assert "--" not in res.json()["error"]  # field names, not command-line options
    assert time.perf_counter() - t0 < 5 and _jobs(client) == before


@pytest.mark.parametrize("body", ['{"guidance": Infinity}', '{"guidance": NaN}', '{"guidance": -Infinity}',
                                  '{"guidance": 1e400}'])
def test_non_finite_guidance(client, body):
    res = _raw(client, body)
    assert res.status_code == 422 and "guidance" in res.json()["error"], res.text


def test_a_lone_surrogate_and_broken_json(client):
    res = _raw(client, '{"model": "shapes", "prompt": "\\ud800 a red circle"}')
    assert res.status_code == 422 and "prompt" in res.json()["error"]
    res = client.post("/api/generate", content=b'{"prompt": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and "error" in res.json()  # not UTF-8: the body cannot be parsed
    res = client.post("/api/generate", content=b'{"label": ', headers={"Content-Type": "application/json"})
    assert res.status_code == 422


def test_body_cap(client):
    before = _jobs(client)
    t0 = time.perf_counter()
    res = client.post("/api/generate", json={"model": "shapes", "prompt": "a" * 10_000_000})
    assert res.status_code == 413 and "too large" in res.json()["error"]
    assert time.perf_counter() - t0 < 10 and _jobs(client) == before


def test_upload_cap_while_streaming(client, png):
    big = b"\0" * 400_000

    def chunks():  # no Content-Length: the cap must be counted as the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
        for i in range(0, len(big), 50_000):
            yield big[i:i + 50_000]
        yield b"\r\n--b--\r\n"

    res = client.post("/api/edit", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert res.status_code == 413
    res = client.post("/api/edit", files={"image": ("x.png", big, "image/png")}, data={"label": "1"})
    assert res.status_code == 413


def test_query_fields_of_the_png_route(client):
    assert client.get("/api/generate.png", params={"label": "3", "steps": "1000000"}).status_code == 422
    assert client.get("/api/generate.png", params={"label": "3", "steps": "201"}).status_code == 400
    for params in ({"n": "true"}, {"seed": str(2**64)}, {"guidance": "inf"}, {"guidance": "nan"}, {"bogus": "1"},
                   {"steps": "true"}):
        res = client.get("/api/generate.png", params={"label": "3", **params})
        assert res.status_code == 422, (params, res.text)
    assert client.get("/api/generate.png", params={"label": "3", "n": "2"}).status_code == 400


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8192, 8192)).save(buf, format="PNG")  # about 65 kB that decode to 64 MB
    return buf.getvalue()


def test_images_checked_from_their_header(client, png):
    bomb = _bomb()
    t0 = time.perf_counter()
    res = client.post("/api/edit", files={"image": ("b.png", bomb, "image/png")}, data={"label": "1"})
    assert res.status_code == 400 and "8192x8192" in res.json()["error"] and "at most 1048576 pixels" in res.json()["error"]
    assert time.perf_counter() - t0 < 5
    good = png((8, 8))
    res = client.post("/api/edit", files={"image": ("x.png", good, "image/png"), "mask": ("m.png", bomb, "image/png")},
                      data={"label": "1"})
    assert res.status_code == 400 and "mask:" in res.json()["error"]
    res = client.post("/api/edit", files={"image": ("x.png", good[: len(good) // 2], "image/png")}, data={"label": "1"})
    assert res.status_code == 400 and "cannot read" in res.json()["error"]  # truncated
    res = client.post("/api/edit", files={"image": ("x.png", b"GIF89a" + b"\0" * 20, "image/gif")}, data={"label": "1"})
    assert res.status_code == 400 and "cannot read" in res.json()["error"]
    res = client.post("/api/edit", files={"image": ("x.png", good, "image/png"), "mask": ("m.png", png((16, 16), color=255),
                                                                                      "image/png")}, data={"label": "1"})
    assert res.status_code == 400 and "mask: it must be the size of the image (8x8)" in res.json()["error"]


@pytest.mark.parametrize("data,status,words", [
    ({"upscale": "0"}, 422, "upscale"),
    ({"upscale": "3"}, 400, "upscale must be a factor"),
    ({"n": "true"}, 422, "n:"),
    ({"strength": "nan"}, 422, "strength"),
    ({"strength": "0"}, 422, "strength"),
    ({"resample": "1000"}, 422, "resample"),
    ({"resample": "2"}, 400, "resample applies to inpainting"),
    ({"extend": "a,b"}, 400, "extend takes"),
    ({"bogus": "1"}, 422, "bogus: Extra inputs are not permitted"),
    ({"model": "/etc"}, 400, "unknown model"),
])
def test_bad_edit_fields(client, png, data, status, words):
    res = client.post("/api/edit", files={"image": ("x.png", png(), "image/png")}, data={"label": "1", **data})
    assert res.status_code == status and words in res.json()["error"], res.text
    assert "--" not in res.json()["error"]


def test_edit_needs_an_image_file(client, png):
    assert client.post("/api/edit", data={"label": "1"}, files={"mask": ("m.png", png(), "image/png")}).status_code == 400
    res = client.post("/api/edit", data={"label": "1", "image": "not a file"}, files={"mask": ("m.png", png(), "image/png")})
    assert res.status_code == 400 and "image: must be a file" in res.json()["error"]
    res = client.post("/api/edit", json={"label": "1"})
    assert res.status_code == 400 and "multipart" in res.json()["error"]


def test_html_is_never_echoed(client):
    for body in ({"label": "<img src=x onerror=alert(1)>"}, {"model": "<script>alert(1)</script>"},
                 {"label": "1", "<b>": 1}):
        res = client.post("/api/generate", json=body)
        assert 400 <= res.status_code < 500 and res.headers["content-type"].startswith("application/json")
        assert b"<" not in res.content and b">" not in res.content, res.text


def test_nfe_cap_before_queueing(make_client):
    c = make_client(max_nfe=10)
    res = c.post("/api/jobs", json={"label": "1", "steps": 11})
    assert res.status_code == 400 and "network evaluations" in res.json()["error"]
    assert c.post("/api/jobs", json={"label": "1", "steps": 10}).status_code == 202


def test_decoding_is_bounded_in_concurrency(monkeypatch, png):
    import genimage.editing.canvas as canvas

    studio = Studio("digits", "cpu", limits=Limits(decode_concurrency=2))
    real, inside, peak, lock = canvas.build_canvas_edit, [0], [0], threading.Lock()

    def slow(*args, **kwargs):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.2)
        with lock:
            inside[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(canvas, "build_canvas_edit", slow)
    threads = [threading.Thread(target=studio.prepare, kwargs={"image": png(), "label": "1"}) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
