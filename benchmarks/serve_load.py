"""Load benchmark of the web service's jobs on loopback.

Starts ``genimage serve`` (digits model, CPU, 127.0.0.1 only) in a subprocess, then runs
``--clients`` concurrent clients that together submit ``--jobs`` jobs (``POST /api/jobs``),
each following its job's server-sent events to the end. Reports p50 / p99 latency (submit to
the ``end`` event), throughput, 429s, and checks that every job id ended exactly once, done,
with the image of its own seed (pixels equal to the same seed generated here directly).

    nice -n 10 python benchmarks/serve_load.py --clients 200 --jobs 1000 --steps 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, queue_size: int, log) -> subprocess.Popen:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen([sys.executable, "-m", "genimage.cli.main", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--model", "digits", "--device", "cpu", "--queue-size", str(queue_size),
                             "--max-images", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)


def reference_pixels(seeds: list[int], steps: int) -> dict[int, np.ndarray]:
    """The pixels each seed's job must return, generated here in batches (images depend only
    on their own seed, not on the batch)."""
    from genimage.pipeline import Pipeline
    from genimage.provenance.record import png_pixels
    from genimage.provenance.watermark import apply_entry

    pipe = Pipeline.from_pretrained("digits", device="cpu")
    opts = pipe.options(steps=steps)
    out = {}
    for i in range(0, len(seeds), 100):
        chunk = seeds[i:i + 100]
        labels = [s % 10 for s in chunk]
        images = pipe(chunk, labels=labels, options=opts)
        records = pipe.records(chunk, labels, None, None, opts)
        for s, img, rec in zip(chunk, images, records):
            out[s] = png_pixels(apply_entry(img, rec.watermark)).numpy()
    return out


def direct_seconds_per_job(steps: int, count: int = 50) -> float:
    """The same jobs run in this process without the service (what the service adds is the rest)."""
    from genimage.serve.studio import Studio

    studio = Studio("digits", "cpu")
    studio.prepare(label=0, steps=steps).run()  # warm up
    t0 = time.perf_counter()
    for seed in range(count):
        studio.prepare(label=seed % 10, seed=seed, steps=steps).run()
    return (time.perf_counter() - t0) / count


async def run_clients(base: str, clients: int, jobs: int, steps: int) -> dict:
    todo = list(range(jobs))
    results: dict[int, dict] = {}
    ends: dict[str, int] = {}
    latencies: list[float] = []
    rejected = 0
    # idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under us
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10, keepalive_expiry=1.0)
    timeout = httpx.Timeout(600.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as http:
        async def client() -> None:
            nonlocal rejected
            while todo:
                seed = todo.pop()
                t0 = time.perf_counter()
                while True:
                    res = await http.post("/api/jobs", json={"label": seed % 10, "seed": seed, "steps": steps})
                    if res.status_code != 429:
                        break
                    rejected += 1
                    await asyncio.sleep(float(res.headers.get("retry-after", "1")))
                assert res.status_code == 202, res.text
                job_id = res.json()["id"]
                final = None
                for attempt in range(5):  # following a job is idempotent: retry a dropped connection
                    try:
                        async with http.stream("GET", f"/api/jobs/{job_id}/events") as stream:
                            event = None
                            async for line in stream.aiter_lines():
                                if line.startswith("event: "):
                                    event = line[7:]
                                elif line.startswith("data: ") and event == "end":
                                    final = json.loads(line[6:])
                                    ends[job_id] = ends.get(job_id, 0) + 1
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.5)
                latencies.append(time.perf_counter() - t0)
                results[seed] = {"id": job_id, "final": final}

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
        health = (await http.get("/api/health")).json()
    return {"results": results, "ends": ends, "latencies": latencies, "wall": wall, "rejected": rejected,
            "health": health}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--queue-size", type=int, default=256)
    args = ap.parse_args()
    if not (1 <= args.clients <= 500 and 1 <= args.jobs <= 5000):
        sys.exit("keep it bounded: --clients 1..500, --jobs 1..5000")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.environ.get("SERVE_LOAD_LOG", os.devnull), "w")
    server = start_server(port, args.queue_size, log)
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() - t0 > 180:
                sys.exit("the server did not start")
            time.sleep(0.3)
        out = asyncio.run(run_clients(base, args.clients, args.jobs, args.steps))
    finally:
        server.terminate()
        server.wait(30)
    expect = reference_pixels(sorted(out["results"]), args.steps)
    wrong, not_done = [], []
    for seed, r in out["results"].items():
        final = r["final"]
        if final is None or final["state"] != "done":
            not_done.append(seed)
            continue
        image = final["images"][0]
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["png_base64"]))))
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        if image["record"]["seed"] != seed or not np.array_equal(pixels, expect[seed]):
            wrong.append(seed)
    direct = direct_seconds_per_job(args.steps)
    lat = sorted(out["latencies"])
    ids = [r["id"] for r in out["results"].values()]
    report = {
        "clients": args.clients, "jobs": args.jobs, "steps": args.steps,
        "p50_s": round(statistics.median(lat), 3), "p99_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3),
        "throughput_jobs_per_s": round(len(lat) / out["wall"], 1), "wall_s": round(out["wall"], 1),
        "service_s_per_job": round(out["wall"] / len(lat), 4), "direct_s_per_job": round(direct, 4),
        "rejected_429": out["rejected"], "distinct_ids": len(set(ids)),
        "ended_exactly_once": all(out["ends"].get(i) == 1 for i in ids) and len(set(ids)) == args.jobs,
        "not_done": len(not_done), "wrong_image": len(wrong), "server_ended": out["health"]["jobs"]["ended"],
    }
    print(json.dumps(report, indent=1))
    if not report["ended_exactly_once"] or wrong or not_done:
        sys.exit(1)


if __name__ == "__main__":
    main()
