"""Who may call the service: loopback by default, a token off loopback, and no cross-site or
foreign-Host request (CSRF, ``Origin: null``, DNS rebinding) reaches a route that computes or
changes state. No route takes a file-system path."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from genimage.errors import GenimageError
from genimage.models.io import BUNDLED_DIR
from genimage.serve.app import create_app
from genimage.serve.guard import AccessPolicy
from genimage.serve.studio import Studio

TOKEN = "t0ken-of-at-least-16-chars"


@pytest.fixture(scope="module")
def client(digits_studio, make_client):
    return make_client(digits_studio)


def test_a_foreign_host_is_refused_everywhere(client):
    for method, path in [("GET", "/api/models"), ("POST", "/api/generate"), ("GET", "/"), ("GET", "/api/jobs/x")]:
        res = client.request(method, path, headers={"Host": "evil.example:8000"}, json={"label": "1", "steps": 1})
        assert res.status_code == 403 and "Host" in res.json()["error"], (path, res.text)
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000"):  # the loopback names, with the port
        assert client.get("/api/models", headers={"Host": host}).status_code == 200
    assert client.get("/api/models", headers={"Host": "127.0.0.1:9999"}).status_code == 403


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:9999", "http://localhost.evil.com:8000"])
def test_cross_origin_requests_are_refused(client, png, origin):
    before = client.get("/api/health").json()["jobs"]
    res = client.post("/api/edit", headers={"Origin": origin}, files={"image": ("x.png", png(), "image/png")},
                      data={"label": "1", "steps": "1"})
    assert res.status_code == 403 and "cross-site" in res.json()["error"]
    res = client.post("/api/generate", headers={"Origin": origin}, json={"label": "1", "steps": 1})
    assert res.status_code == 403
    res = client.post("/api/jobs", headers={"Origin": origin}, json={"label": "1", "steps": 1})
    assert res.status_code == 403
    assert client.get("/api/health").json()["jobs"] == before  # no job was started


def test_own_origin_and_same_origin_fetches_run(client):
    res = client.post("/api/generate", headers={"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"},
                      json={"label": "1", "steps": 1})
    assert res.status_code == 200, res.text


def test_sec_fetch_site_from_another_site_is_refused(client):
    for site in ("cross-site", "same-site"):
        res = client.post("/api/jobs", headers={"Sec-Fetch-Site": site}, json={"label": "1", "steps": 1})
        assert res.status_code == 403 and "Sec-Fetch-Site" in res.json()["error"]
    # following a link to the page itself is fine; the page's own requests are same-origin
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}).status_code == 200


def test_the_computing_get_needs_the_custom_header(digits_studio):
    bare = TestClient(create_app(digits_studio), base_url="http://127.0.0.1:8000")  # what an <img> tag sends
    res = bare.get("/api/generate.png", params={"label": "3", "steps": "1000000"})
    assert res.status_code == 403 and "X-Genimage: 1" in res.json()["error"]
    res = bare.get("/api/generate.png", params={"label": "3"}, headers={"Sec-Fetch-Site": "cross-site", "X-Genimage": "1"})
    assert res.status_code == 403
    res = bare.get("/api/generate.png", params={"label": "3", "steps": "2"}, headers={"X-Genimage": "1"})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"


def test_security_headers(client):
    res = client.get("/")
    assert res.headers["x-content-type-options"] == "nosniff" and res.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert "access-control-allow-origin" not in res.headers


def test_off_loopback_needs_a_token():
    with pytest.raises(GenimageError, match="--token"):
        AccessPolicy.for_bind("0.0.0.0", 8000)
    with pytest.raises(GenimageError, match="--token"):
        AccessPolicy.for_bind("192.168.1.5", 8000)
    with pytest.raises(GenimageError, match="16 characters"):
        AccessPolicy.for_bind("0.0.0.0", 8000, token="short")
    policy = AccessPolicy.for_bind("192.168.1.5", 8000, token=TOKEN, extra_hosts=["genimage.lan"])
    assert policy.allowed_hosts == {"192.168.1.5:8000", "genimage.lan:8000"}


def test_the_cli_refuses_to_bind_off_loopback_without_a_token(monkeypatch):
    from typer.testing import CliRunner

    from genimage.cli.main import app

    monkeypatch.delenv("GENIMAGE_API_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--model", "digits"])
    assert res.exit_code == 2 and "--token" in res.output


def test_with_a_token_every_route_but_health_needs_it(digits_studio):
    policy = AccessPolicy.for_bind("10.1.2.3", 8000, token=TOKEN)
    c = TestClient(create_app(digits_studio, policy), base_url="http://10.1.2.3:8000", headers={"X-Genimage": "1"})
    assert c.get("/api/health").status_code == 200 and c.get("/api/health").json()["token_required"]
    assert c.get("/").status_code == 200  # the static page (it asks for the token)
    for method, path in [("GET", "/api/models"), ("POST", "/api/generate"), ("POST", "/api/jobs"),
                         ("GET", "/api/jobs/abc"), ("DELETE", "/api/jobs/abc"), ("GET", "/openapi.json"),
                         ("GET", "/api/generate.png")]:
        for auth in (None, "Bearer wrong-token-wrong-token", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
            res = c.request(method, path, headers={"Authorization": auth} if auth else {}, json={"label": "1"})
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", (method, path, auth)
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api/models", headers=ok).status_code == 200
    assert c.post("/api/generate", headers=ok, json={"label": "1", "steps": 1}).status_code == 200


def test_no_route_takes_a_path(client, tmp_path):
    secret = tmp_path / "secretmodel"
    secret.mkdir()
    (secret / "config.json").write_text(json.dumps({"family": "diffusion", "SECRET_KEY": "SECRET_VALUE_123"}))
    errors = []
    for name in (str(secret), str(BUNDLED_DIR / "digits"), "/tmp", "/no-such-dir", "../weights/digits",
                 "weights/digits", ".", "~"):
        res = client.post("/api/generate", json={"model": name, "steps": 1})
        assert res.status_code in (400, 422), res.text  # 422: longer than a model name can be
        assert "SECRET" not in res.text and "family" not in res.text
        if res.status_code == 400:
            errors.append(res.json()["error"].replace(repr(name), "NAME"))
    assert len(errors) >= 6 and len(set(errors)) == 1 and "digits" in errors[0]  # same answer whether the folder exists or not
    res = client.post("/api/jobs/replay", files={"png": ("x.png", b"\x89PNG not really", "image/png")})
    assert res.status_code == 400


def test_operator_models_by_name(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(BUNDLED_DIR / "digits", folder)
    studio = Studio("mine", "cpu", 2, model_dirs={"mine": folder})
    assert [m["name"] for m in studio.models()][-1] == "mine"
    c = TestClient(create_app(studio), base_url="http://127.0.0.1:8000")
    res = c.post("/api/generate", json={"label": "4", "steps": 2})
    assert res.status_code == 200 and res.json()["model"] == "mine"
    with pytest.raises(GenimageError, match="NAME must be"):
        Studio("digits", "cpu", model_dirs={"../x": folder})
    with pytest.raises(GenimageError, match="already a served model"):
        Studio("digits", "cpu", model_dirs={"digits": folder})
