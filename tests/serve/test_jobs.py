"""Jobs: ids and queue positions at once, per-step progress (also as server-sent events),
results that replay, cancel of queued and running jobs, a bounded queue (429), every job
ending exactly once, the per-job caps, and a real server that stops work for a client that
left and stops within seconds on SIGTERM."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genimage.pipeline import replay
from genimage.serve.jobs import JobQueue, QueueFull
from genimage.serve.studio import Made


class Gated:
    """Work for the queue that takes ``steps`` steps, each after ``gate`` opens."""

    kind, model = "generate", "test"

    def __init__(self, steps=3, gate=None, tag=0):
        self.steps, self.gate, self.tag, self.warnings, self.runs = steps, gate, tag, [], 0

    def run(self, callback):
        self.runs += 1
        for i in range(self.steps):
            if self.gate is not None:
                assert self.gate.wait(10)
            callback({"i": i, "nfe": i + 1})
        return [Made(self.tag, b"", {})]


def _wait(pred, timeout=20):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_queue_cancel_positions_and_exactly_once():
    q = JobQueue(queue_size=3, keep=100)
    gate = threading.Event()
    first = q.submit(Gated(gate=gate))
    _wait(lambda: first.state == "running")
    waiting = [q.submit(Gated(tag=i)) for i in range(3)]
    assert [q.position(j) for j in waiting] == [1, 2, 3]
    with pytest.raises(QueueFull) as full:
        q.submit(Gated())
    assert full.value.retry_after >= 1
    assert q.cancel(waiting[1]) and waiting[1].state == "cancelled" and q.position(waiting[2]) == 2
    assert q.cancel(first)  # running: stops at its next step
    gate.set()
    for job in [first, *waiting]:
        assert job.ended.wait(10)
    assert first.state == "cancelled" and first.step == 1 and first.reason == "cancelled by the client"
    assert [j.state for j in waiting] == ["done", "cancelled", "done"]
    assert not q.cancel(waiting[0])  # already ended
    assert q.stats()["ended"] == {"done": 2, "failed": 0, "cancelled": 2}
    q.close()


def test_many_clients_every_job_ends_once():
    q = JobQueue(queue_size=1000, keep=1000)
    works = [Gated(steps=2, tag=i) for i in range(200)]
    jobs = [None] * len(works)

    def client(k):
        for i in range(k, len(works), 8):
            jobs[i] = q.submit(works[i])
            if i % 7 == 0:
                q.cancel(jobs[i])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in jobs:
        assert job.ended.wait(20)
    assert all(w.runs <= 1 for w in works)  # none run twice
    done = [j for j in jobs if j.state == "done"]
    assert all(j.results[0].seed == works[jobs.index(j)].tag for j in done)
    assert sum(q.stats()["ended"].values()) == 200 and len({j.id for j in jobs}) == 200
    q.close()


def test_finished_jobs_are_kept_in_a_bounded_store():
    q = JobQueue(keep=3)
    jobs = [q.submit(Gated(steps=1, tag=i)) for i in range(6)]
    for job in jobs:
        assert job.ended.wait(10)
    _wait(lambda: q.get(jobs[2].id) is None)
    assert [q.get(j.id) is not None for j in jobs] == [False, False, False, True, True, True]
    q.close()


def test_caps_fail_a_running_job():
    q = JobQueue(max_nfe=2)
    job = q.submit(Gated(steps=5))
    assert job.ended.wait(10) and job.state == "failed" and "network evaluations" in job.reason
    q.close()
    q = JobQueue(max_seconds=0.05)
    gate = threading.Event()
    job = q.submit(Gated(steps=5, gate=gate))
    time.sleep(0.1)
    gate.set()
    assert job.ended.wait(10) and job.state == "failed" and "longer than" in job.reason
    q.close()


def test_close_cancels_waiting_and_running():
    q = JobQueue()
    gate = threading.Event()
    running = q.submit(Gated(gate=gate))
    _wait(lambda: running.state == "running")
    queued = q.submit(Gated())
    threading.Timer(0.2, gate.set).start()
    q.close()
    assert running.state == "cancelled" and queued.state == "cancelled" and "shutting down" in queued.reason


@pytest.fixture(scope="module")
def client(digits_studio, make_client):
    return make_client(digits_studio)


def test_a_job_over_http(client, tmp_path):
    res = client.post("/api/jobs", json={"label": "7", "seed": 5, "n": 2, "steps": 6})
    assert res.status_code == 202, res.text
    job = res.json()
    assert job["state"] in ("queued", "running") and isinstance(job["position"], (int, type(None)))
    assert job["id"] and job["events"] == f"/api/jobs/{job['id']}/events"
    events = []
    with client.stream("GET", job["events"]) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append([line[7:]])
            elif line.startswith("data: "):
                events[-1].append(json.loads(line[6:]))
    assert [e[0] for e in events].count("end") == 1 and events[-1][0] == "end"
    steps = [e[1]["step"] for e in events]
    assert steps == sorted(steps) and events[-1][1]["progress"] == 1.0 and events[-1][1]["state"] == "done"
    body = client.get(job["url"]).json()
    assert body["state"] == "done" and body["step"] == body["total"] == 6
    assert [im["seed"] for im in body["images"]] == [5, 6]
    png = client.get(body["images"][1]["url"])
    assert png.headers["content-type"] == "image/png" and png.content == base64.b64decode(body["images"][1]["png_base64"])
    (tmp_path / "a.png").write_bytes(png.content)
    assert replay(tmp_path / "a.png").match
    assert client.get(f"/api/jobs/{job['id']}/images/2.png").status_code == 404
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.delete("/api/jobs/nope").status_code == 404


def test_replay_a_png_by_posting_it(client, png):
    made = client.post("/api/generate", json={"label": "3", "seed": 11, "steps": 3}).json()["images"][0]
    data = base64.b64decode(made["png_base64"])
    job = client.post("/api/jobs/replay", files={"png": ("x.png", data, "image/png")}).json()
    _wait(lambda: client.get(f"/api/jobs/{job['id']}").json()["state"] == "done")
    out = client.get(f"/api/jobs/{job['id']}").json()["images"][0]
    assert out["match"] is True and out["record"]["seed"] == 11 and base64.b64decode(out["png_base64"]) == data
    res = client.post("/api/jobs/replay", files={"png": ("x.png", png(), "image/png")})
    assert res.status_code == 400 and "no genimage record" in res.json()["error"]


def test_cancel_a_running_job_over_http(client):
    job = client.post("/api/jobs", json={"label": "1", "steps": 200}).json()
    _wait(lambda: client.get(f"/api/jobs/{job['id']}").json()["state"] != "queued")
    res = client.delete(f"/api/jobs/{job['id']}")
    assert res.status_code == 200
    _wait(lambda: client.get(f"/api/jobs/{job['id']}").json()["state"] in ("cancelled", "done"))
    body = client.get(f"/api/jobs/{job['id']}").json()
    assert body["state"] == "cancelled" and body["step"] < 200 and "images" not in body


def test_a_full_queue_answers_429(digits_studio, make_client):
    jobs = JobQueue(queue_size=1)
    c = make_client(digits_studio, jobs=jobs)
    gate = threading.Event()
    blocker = jobs.submit(Gated(gate=gate))
    _wait(lambda: blocker.state == "running")
    assert c.post("/api/jobs", json={"label": "1", "steps": 2}).status_code == 202
    res = c.post("/api/jobs", json={"label": "1", "steps": 2})
    assert res.status_code == 429 and int(res.headers["retry-after"]) >= 1 and "queue is full" in res.json()["error"]
    gate.set()
    jobs.close()
    res = c.post("/api/jobs", json={"label": "1", "steps": 2})
    assert res.status_code == 503


def test_truncated_prompts_are_reported(client):
    res = client.post("/api/generate", json={"model": "shapes", "prompt": "a red circle " * 30, "steps": 1})
    assert res.status_code == 200 and "the model reads only the first" in res.json()["warnings"][0]


# ---------------------------------------------------------------------------------- a real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port, method, path, body=None, timeout=30):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    res = conn.getresponse()
    out = res.status, json.loads(res.read() or b"null")
    conn.close()
    return out


def test_a_real_server_drops_abandoned_work_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genimage.cli.main", "serve", "--port", str(port), "--model", "digits",
                             "--device", "cpu", "--max-steps", "100000", "--max-nfe", "100000", "--max-seconds", "600"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while True:
            try:
                if _http(port, "GET", "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() - t0 < 120, "server did not start"
            time.sleep(0.3)
        # a synchronous request whose client leaves: its job is cancelled, not computed for nobody
        body = json.dumps({"label": "3", "steps": 100000}).encode()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))
            time.sleep(1.0)
        t0 = time.time()
        while _http(port, "GET", "/api/health")[1]["jobs"]["ended"]["cancelled"] < 1:
            assert time.time() - t0 < 10, "abandoned work kept running"
            time.sleep(0.1)
        status, job = _http(port, "POST", "/api/jobs", {"label": "3", "steps": 100000})
        assert status == 202
        while _http(port, "GET", f"/api/jobs/{job['id']}")[1]["state"] != "running":
            time.sleep(0.05)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert time.time() - t0 < 10 and proc.returncode is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_replay_refuses_a_model_the_service_does_not_serve(client):
    from PIL import Image, PngImagePlugin

    made = client.post("/api/generate", json={"label": "2", "steps": 2}).json()["images"][0]
    record = dict(made["record"], model="/some/dir")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("genimage", json.dumps(record))
    buf = io.BytesIO()
    Image.open(io.BytesIO(base64.b64decode(made["png_base64"]))).save(buf, format="PNG", pnginfo=info)
    res = client.post("/api/jobs/replay", files={"png": ("x.png", buf.getvalue(), "image/png")})
    assert res.status_code == 400 and "does not serve" in res.json()["error"] and "/some/dir" not in res.text


def test_detect_an_upload(client):
    made = client.post("/api/generate", json={"label": "2", "steps": 2}).json()["images"][0]
    res = client.post("/api/detect", files={"image": ("x.png", base64.b64decode(made["png_base64"]), "image/png")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["record"]["model"] == "digits" and 0 <= body["detector"]["p_generated"] <= 1 and "image" not in body
