"""A real ``genimage serve`` process on loopback against misbehaving clients: slow-loris
clients trickling headers or body get 408 and lose their connection while other clients are
served; clients that disconnect mid-upload or while a synchronous generate runs leave a
healthy worker whose next request works (larger counts: scripts/reliability_service.py)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service_harness import (disconnect_mid_generate, disconnect_mid_upload, free_port, health,  # noqa: E402
                             multipart, png_bytes, request, slow_loris, start_server, stop_server)

DEADLINE = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = start_server(port, "--header-timeout", str(DEADLINE), "--body-timeout", str(DEADLINE), log=log)
    yield port
    stop_server(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-2000:]


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_slow_loris_client_is_cut_off_while_others_are_served(server, part):
    results: list = []
    clients = [threading.Thread(target=lambda: results.append(slow_loris(server, part, 0.05, limit=30)))
               for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(0.3)  # the trickles are under way
    served = [request(server, "POST", "/api/generate", {"label": "2", "steps": 2})[0] for _ in range(2)]
    for c in clients:
        c.join()
    assert served == [200, 200]
    assert [r[0] for r in results] == ["408"] * 3, results  # answered Request Timeout, then closed
    assert all(r[1] >= DEADLINE * 0.9 for r in results), results  # not before its deadline


def test_a_slow_upload_body_gets_408(server):
    body, ctype = multipart({"label": "3"}, {"image": png_bytes(64)})
    import socket

    with socket.create_connection(("127.0.0.1", server), timeout=30) as s:
        s.sendall(f"POST /api/edit HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:40])  # and nothing more
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1.5 seconds" in reply, reply[:300]


def test_disconnects_mid_upload_and_mid_generate_leave_a_healthy_worker(server):
    before = health(server)["jobs"]["ended"]
    for fraction in (0.0, 0.3, 0.9):
        disconnect_mid_upload(server, fraction)
    for _ in range(2):
        disconnect_mid_generate(server, wait=0.5)
    t0 = time.time()
    while health(server)["jobs"]["ended"]["cancelled"] < before["cancelled"] + 2:  # both generate jobs cancelled
        assert time.time() - t0 < 30, health(server)
        time.sleep(0.1)
    jobs = health(server)["jobs"]
    assert not jobs["running"] and jobs["waiting"] == 0
    assert jobs["ended"]["failed"] == before["failed"]
    status, body = request(server, "POST", "/api/generate", {"label": "5", "steps": 2})
    assert status == 200 and len(body["images"]) == 1
    up, ctype = multipart({"label": "3", "steps": "2", "strength": "0.5"}, {"image": png_bytes(8)})
    status, body = request(server, "POST", "/api/edit", raw=up, headers={"Content-Type": ctype})
    assert status == 200, body
