"""Misbehaving clients against a real ``genimage serve`` (digits model, loopback), larger
counts than the test suite's:

1. ``--disconnects N``: N clients that vanish, alternately mid-upload (an edit's multipart
   body cut at a random point) and while their synchronous ``POST /api/generate`` runs;
   afterwards every abandoned generate job is cancelled, nothing is left running or waiting,
   no job failed, and a normal request works.
2. ``--loris N`` slow-loris clients in parallel (half trickling headers, half a body, one
   byte every 0.2 s) while ``--jobs M`` normal generate requests are made one after another:
   every slow client is answered 408 and cut off within the deadline (+ slack), every normal
   request completes with 200.
3. ``--fuzz K`` damaged uploads (tests/upload_fuzz.py) spread over the four upload routes:
   no 5xx, every refusal a JSON error, the sentinel of the pickle payloads never written.

Finally the server's log must hold no traceback. Prints a summary for RELIABILITY.md.

Usage:
    nice python scripts/reliability_service.py [--disconnects 50] [--loris 20] [--jobs 20] [--fuzz 500]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from service_harness import (disconnect_mid_generate, disconnect_mid_upload, free_port, health,  # noqa: E402
                             multipart, request, slow_loris, start_server, stop_server)
from upload_fuzz import damaged, good_image  # noqa: E402


def _post_upload(port: int, route: str, data: bytes) -> tuple[int, object]:
    if route == "edit":
        body, ctype = multipart({"label": "1", "steps": "2"}, {"image": data})
        return request(port, "POST", "/api/edit", raw=body, headers={"Content-Type": ctype})
    if route == "edit-mask":
        body, ctype = multipart({"label": "1", "steps": "2"}, {"image": good_image("PNG", 8), "mask": data})
        return request(port, "POST", "/api/edit", raw=body, headers={"Content-Type": ctype})
    if route == "detect":
        body, ctype = multipart({}, {"image": data})
        return request(port, "POST", "/api/detect", raw=body, headers={"Content-Type": ctype})
    body, ctype = multipart({}, {"png": data})
    return request(port, "POST", "/api/jobs/replay", raw=body, headers={"Content-Type": ctype})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--disconnects", type=int, default=50)
    ap.add_argument("--loris", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--deadline", type=float, default=3.0, help="--header-timeout and --body-timeout of the server")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="service_reliability_"))
    port = free_port()
    log = work / "serve.log"
    proc = start_server(port, "--header-timeout", str(args.deadline), "--body-timeout", str(args.deadline), log=log)
    ok = True
    try:
        # 1. disconnects
        before = health(port)["jobs"]["ended"]
        t0 = time.time()
        generates = 0
        for i in range(args.disconnects):
            if i % 2:
                disconnect_mid_generate(port, wait=rng.uniform(0.3, 1.0))
                generates += 1
            else:
                disconnect_mid_upload(port, rng.uniform(0.0, 0.95), size=rng.choice((8, 64, 256)))
        deadline = time.time() + 60
        while health(port)["jobs"]["ended"]["cancelled"] < before["cancelled"] + generates and time.time() < deadline:
            time.sleep(0.2)
        jobs = health(port)["jobs"]
        cancelled = jobs["ended"]["cancelled"] - before["cancelled"]
        failed = jobs["ended"]["failed"] - before["failed"]
        after = request(port, "POST", "/api/generate", {"label": "4", "steps": 2})[0]
        held = cancelled == generates and failed == 0 and not jobs["running"] and jobs["waiting"] == 0 and after == 200
        ok &= held
        print(f"disconnects: {args.disconnects} ({args.disconnects - generates} mid-upload, {generates} mid-generate) in "
              f"{time.time() - t0:.0f}s; generate jobs cancelled {cancelled}/{generates}, failed {failed}, running "
              f"{jobs['running']}, waiting {jobs['waiting']}; next request {after} -> {'held' if held else 'FAILED'}",
              flush=True)

        # 2. slow loris in parallel with normal jobs
        results: list = []
        lock = threading.Lock()

        def loris(part: str) -> None:
            r = slow_loris(port, part, 0.2, limit=args.deadline * 10 + 30)
            with lock:
                results.append((part, *r))

        threads = [threading.Thread(target=loris, args=("headers" if i % 2 else "body",)) for i in range(args.loris)]
        t0 = time.time()
        for t in threads:
            t.start()
        time.sleep(0.5)
        latencies, statuses = [], Counter()
        for _ in range(args.jobs):
            t1 = time.time()
            statuses[request(port, "POST", "/api/generate", {"label": str(rng.randrange(10)), "steps": 4})[0]] += 1
            latencies.append(time.time() - t1)
        for t in threads:
            t.join()
        outcomes = Counter(r[1] for r in results)
        longest = max(r[2] for r in results) if results else 0.0
        held = outcomes == Counter({"408": args.loris}) and statuses == Counter({200: args.jobs})
        ok &= held
        latencies.sort()
        print(f"slow loris: {args.loris} clients ({args.loris - args.loris // 2} body, {args.loris // 2} headers, a byte "
              f"every 0.2 s, deadline {args.deadline:g} s): outcomes {dict(outcomes)}, longest connection {longest:.1f}s; "
              f"meanwhile {args.jobs} normal generates: {dict(statuses)}, median {latencies[len(latencies) // 2]:.2f}s, "
              f"max {latencies[-1]:.2f}s; {time.time() - t0:.0f}s -> {'held' if held else 'FAILED'}", flush=True)

        # 3. upload fuzz
        sentinel = work / "sentinel"
        codes: Counter = Counter()
        kinds: Counter = Counter()
        worst = []
        t0 = time.time()
        for i in range(args.fuzz):
            kind, data = damaged(rng, sentinel)
            route = ("edit", "edit-mask", "detect", "replay")[i % 4]
            status, body = _post_upload(port, route, data)
            codes[status] += 1
            kinds[kind.split("-")[0]] += 1
            if status >= 500 or (status >= 400 and not (isinstance(body, dict) and "error" in body)):
                worst.append((route, kind, status))
        good = sum(_post_upload(port, "edit", good_image(f, 8))[0] == 200 for f in ("PNG", "JPEG", "WEBP"))
        held = not worst and not sentinel.exists() and good == 3
        ok &= held
        print(f"upload fuzz: {args.fuzz} damaged uploads ({dict(kinds)}) in {time.time() - t0:.0f}s: statuses "
              f"{dict(sorted(codes.items()))}; bad answers {worst[:5] or 'none'}; sentinel "
              f"{'WRITTEN' if sentinel.exists() else 'absent'}; good uploads after it {good}/3 -> "
              f"{'held' if held else 'FAILED'}", flush=True)
        print(f"final health: {health(port)['jobs']}")
    finally:
        stop_server(proc)
    text = log.read_text()
    tracebacks = text.count("Traceback")
    ok &= tracebacks == 0
    print(f"server log: {tracebacks} tracebacks ({log})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
