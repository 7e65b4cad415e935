"""Damaged uploads (random bytes, cut or bit-flipped PNG / JPEG / WebP, huge declared sizes,
pickles dressed as images) on every upload route: never a 5xx, every refusal a JSON error,
nothing unpickled, and good uploads mixed in still work (larger run:
scripts/reliability_service.py --fuzz)."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from upload_fuzz import damaged, good_image, huge_jpeg, huge_png, huge_webp  # noqa: E402


def _post(client, route: str, data: bytes):
    if route == "edit":
        return client.post("/api/edit", files={"image": ("x.png", data, "image/png")}, data={"label": "1", "steps": "2"})
    if route == "edit-mask":
        return client.post("/api/edit", files={"image": ("x.png", good_image("PNG", 8), "image/png"),
                                               "mask": ("m.png", data, "image/png")}, data={"label": "1", "steps": "2"})
    if route == "detect":
        return client.post("/api/detect", files={"image": ("x.png", data, "image/png")})
    return client.post("/api/jobs/replay", files={"png": ("x.png", data, "image/png")})


def test_damaged_uploads_never_get_a_5xx(make_client, tmp_path):
    client = make_client(max_steps=3)
    sentinel = tmp_path / "sentinel"
    rng = random.Random(0)
    seen = Counter()
    for i in range(120):
        kind, data = damaged(rng, sentinel)
        route = ("edit", "edit-mask", "detect", "replay")[i % 4]
        res = _post(client, route, data)
        assert res.status_code < 500, (route, kind, res.status_code, res.text[:300])
        if res.status_code >= 400:
            assert "error" in res.json() and b"<" not in res.content, (route, kind, res.text[:300])
        seen[kind.split("-")[0]] += 1
        if i % 20 == 0:  # good uploads in between still work
            assert _post(client, "edit", good_image(rng.choice(("PNG", "JPEG", "WEBP")), 8)).status_code == 200
    assert not sentinel.exists()
    assert len(seen) >= 7, seen  # every kind of damage was tried


def test_huge_declared_sizes_are_refused_from_the_header(make_client):
    client = make_client()
    for data, size in ((huge_png(), "2147483647x2147483647"), (huge_png(2**31 - 1, 1), "2147483647x1"),
                       (huge_jpeg(), "65535x65535"), (huge_webp(), "16384x16384")):
        for route in ("edit", "edit-mask", "detect"):
            res = _post(client, route, data)
            error = res.json()["error"]
            assert res.status_code == 400 and "pixels per image" in error, (route, size, res.text[:300])
            assert size in error or "more pixels than PIL opens" in error, error
