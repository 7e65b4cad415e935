"""Misbehaving clients against a real ``genimage serve`` process on loopback: clients that
disconnect mid-upload or while a synchronous generate runs, and slow-loris clients that
trickle their headers or body byte by byte.

Used by tests/serve/test_slow_clients.py (a few of each, seconds) and
scripts/reliability_service.py (many, in parallel with normal jobs; results in RELIABILITY.md).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *extra: str, log: Path | None = None) -> subprocess.Popen:
    """``genimage serve`` on 127.0.0.1:``port`` with the digits model; returns once
    ``/api/health`` answers (raises if it does not within 120 s)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "genimage.cli.main", "serve", "--port", str(port), "--model", "digits",
                             "--device", "cpu", "--max-steps", "100000", "--max-nfe", "100000", "--max-seconds", "600",
                             *extra], env=env, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.time()
    while True:
        try:
            if request(port, "GET", "/api/health", timeout=2)[0] == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() - t0 > 120:
            proc.kill()
            raise RuntimeError(f"the server did not start (exit {proc.poll()})")
        time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 60,
            raw: bytes | None = None, headers: dict | None = None) -> tuple[int, object]:
    """One request on a fresh connection: ``(status, parsed JSON or None)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        res = conn.getresponse()
        payload = res.read()
        try:
            return res.status, json.loads(payload or b"null")
        except ValueError:
            return res.status, None
    finally:
        conn.close()


def png_bytes(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), 128).save(buf, format="PNG")
    return buf.getvalue()


def multipart(fields: dict[str, str], files: dict[str, bytes], boundary: str = "genimageboundary") -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _head(port: int, method: str, path: str, length: int, ctype: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nX-Genimage: 1\r\n\r\n").encode()


def disconnect_mid_upload(port: int, fraction: float = 0.5, size: int = 64) -> None:
    """Send the headers and ``fraction`` of an edit upload's body, then close the socket."""
    body, ctype = multipart({"label": "3", "steps": "2"}, {"image": png_bytes(size)})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_head(port, "POST", "/api/edit", len(body), ctype) + body[: int(len(body) * fraction)])
        time.sleep(0.05)


def disconnect_mid_generate(port: int, steps: int = 100000, wait: float = 0.5) -> None:
    """Start a synchronous ``POST /api/generate`` with many steps, then close the socket
    after ``wait`` seconds (while the job runs)."""
    body = json.dumps({"label": "3", "steps": steps}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_head(port, "POST", "/api/generate", len(body), "application/json") + body)
        time.sleep(wait)


def slow_loris(port: int, part: str, interval: float, limit: float) -> tuple[str, float]:
    """Trickle one request byte by byte (every ``interval`` s), its headers (``part="headers"``)
    or, after complete headers, its body (``part="body"``), until the server answers or closes
    the connection, or ``limit`` seconds pass. Returns ``(what happened, seconds)``: ``"408"``
    (answered Request Timeout), ``"closed"`` (closed without an answer), ``"other:STATUS"`` or
    ``"still open"`` (the server never gave up within ``limit``)."""
    if part == "headers":
        body = json.dumps({"label": "3", "steps": 2}).encode()
        prefix, trickle = b"", _head(port, "POST", "/api/generate", len(body), "application/json") + body
    else:  # a declared body far longer than a deadline lets through at this pace
        prefix, trickle = _head(port, "POST", "/api/generate", 60_000, "application/json"), b" " * 60_000
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if prefix:
            s.sendall(prefix)
        s.setblocking(False)
        got = b""
        for i in range(len(trickle)):
            if time.time() - t0 > limit:
                return "still open", time.time() - t0
            try:
                s.send(trickle[i:i + 1])
            except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                break
            end = time.time() + interval
            while time.time() < end:
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    time.sleep(min(0.01, interval))
                    continue
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return ("408" if got.startswith(b"HTTP/1.1 408") else
                            f"other:{got[9:12].decode(errors='replace')}" if got else "closed"), time.time() - t0
                got += chunk
        s.setblocking(True)
        s.settimeout(max(limit - (time.time() - t0), 0.1))
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        if got.startswith(b"HTTP/1.1 408"):
            return "408", time.time() - t0
        return (f"other:{got[9:12].decode(errors='replace')}" if got else "closed"), time.time() - t0
    finally:
        s.close()


def health(port: int) -> dict:
    status, body = request(port, "GET", "/api/health", timeout=10)
    assert status == 200, status
    return body  # type: ignore[return-value]
