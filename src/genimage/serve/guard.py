"""Who may call the service, checked before any route runs (an ASGI middleware).

The threats are those of a local image server that a web page in the user's browser can
reach (the CSRF chain of CVE-2024-10481 and its bypasses):

* **Cross-site requests.** A page on another site can make the browser send requests to
  ``127.0.0.1``. Every request whose ``Origin`` header is present and not the service's own
  (``Origin: null`` included) is refused with 403, as is one whose ``Sec-Fetch-Site`` says it
  came from another site (the page at ``/`` may still be opened from a link). A GET that
  computes (``/api/generate.png``) must also carry the header ``X-Genimage: 1``, which a
  page on another site cannot add without a CORS preflight that the service never grants,
  so an ``<img>`` tag elsewhere cannot start work.
* **DNS rebinding.** A foreign name resolving to ``127.0.0.1`` gets past the browser's
  same-origin rule but sends its own ``Host`` header: a request whose ``Host`` is not in
  the allowed list is refused with 403.
* **Other machines.** Off loopback the service needs a token: every route but
  ``/api/health`` and the static page (``/``, ``/page.js``: a browser cannot send a header
  when opening a page; the page asks for the token and sends it) needs
  ``Authorization: Bearer TOKEN`` (compared in constant time), else 401.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from dataclasses import dataclass, field

from genimage.errors import GenimageError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Routes open without a token: liveness, and the static page (which holds no data).
PUBLIC_PATHS = frozenset({"/api/health", "/", "/page.js"})
#: GET routes that start computation: they need the ``X-Genimage: 1`` header.
COMPUTE_GETS = frozenset({"/api/generate.png"})
CLIENT_HEADER = "x-genimage"
#: Added to every response: no sniffing a JSON error as HTML, no framing, no inline scripts.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                 b"form-action 'none'"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """What the guard allows.

    Attributes:
        allowed_hosts: ``Host`` header values served (lower case, with the port where the
            client sends one).
        token: The bearer token every non-public route needs; ``None``: no token (loopback
            only, see :meth:`for_bind`).
    """

    allowed_hosts: frozenset[str]
    token: str | None = None
    allowed_origins: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        hosts = frozenset(h.lower() for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "allowed_origins",
                           frozenset(f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")))

    @classmethod
    def for_bind(cls, host: str, port: int, token: str | None = None,
                 extra_hosts: tuple[str, ...] | list[str] = ()) -> "AccessPolicy":
        """The policy of a service bound to ``host:port``: that host (and, on loopback, its
        other loopback names) with the port, plus ``extra_hosts`` (``NAME`` or
        ``NAME:PORT``; a bare name gets the port). Off loopback a token is required.

        Raises:
            GenimageError: Off loopback without a token, or an empty token.
        """
        if token is not None and len(token) < 16:
            raise GenimageError("the API token must be at least 16 characters (e.g. `python -c \"import secrets; "
                                "print(secrets.token_urlsafe())\"`)")
        if not is_loopback(host) and token is None:
            raise GenimageError(f"binding to {host or 'all interfaces'} lets other machines call the service: give "
                                "--token TOKEN (or set GENIMAGE_API_TOKEN), or bind to 127.0.0.1")
        names = list(LOOPBACK_NAMES) if is_loopback(host) else [f"[{host}]" if ":" in host else host]
        for extra in extra_hosts:
            extra = extra.strip().lower()
            if not extra or any(c in extra for c in "/ @?#"):
                raise GenimageError(f"--allowed-host takes a host name or NAME:PORT, got {extra!r}")
            names.append(extra)
        hosts = set()
        for name in names:
            if name.rsplit(":", 1)[-1].isdigit() and not name.endswith("]"):
                hosts.add(name)
                continue
            hosts.add(f"{name}:{port}")
            if port == 80:
                hosts.add(name)
        return cls(frozenset(hosts), token)


def _refuse(status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None):
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS, *(extra or [])]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware applying an :class:`AccessPolicy` to every HTTP request.

    Args:
        app: The ASGI app to protect.
        policy: What to allow.
    """

    def __init__(self, app, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    def check(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, list] | None:
        """``(status, message, extra headers)`` of a refusal, or ``None`` to let it through."""
        p = self.policy
        host = headers.get("host", "").lower()
        if host not in p.allowed_hosts:
            return 403, ("this service does not answer to that Host name; use one of "
                         f"{', '.join(sorted(p.allowed_hosts))} (or start it with --allowed-host NAME)"), []
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in p.allowed_origins:
            return 403, "cross-site request refused: the Origin is not this service's own", []
        site = headers.get("sec-fetch-site")
        navigation = method == "GET" and path == "/" and headers.get("sec-fetch-mode", "navigate") == "navigate"
        if site is not None and site not in ("same-origin", "none") and not navigation and path != "/api/health":
            return 403, "cross-site request refused (Sec-Fetch-Site: " + site[:20] + ")", []
        if p.token is not None and path not in PUBLIC_PATHS:
            auth = headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), p.token.encode()):
                return 401, "this service needs a token: send the header Authorization: Bearer TOKEN", [
                    (b"www-authenticate", b"Bearer")]
        if method in ("GET", "HEAD") and path in COMPUTE_GETS and headers.get(CLIENT_HEADER) != "1":
            return 403, ("this GET computes an image: send the header X-Genimage: 1 (a page on another site "
                         "cannot), or POST /api/generate"), []
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            key = k.decode("latin-1").lower()
            headers[key] = headers[key] + "," + v.decode("latin-1") if key in headers else v.decode("latin-1")
        refusal = self.check(scope.get("method", "GET"), scope.get("path", ""), headers)
        if refusal is None:
            async def send_with_headers(message) -> None:
                if message["type"] == "http.response.start":
                    have = {k.lower() for k, _ in message.get("headers", [])}
                    message = {**message, "headers": [*message.get("headers", []),
                                                      *(h for h in SECURITY_HEADERS if h[0] not in have)]}
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        start, body = _refuse(*refusal)
        await send(start)
        await send(body)


class BodyCap:
    """ASGI middleware capping request bodies: ``upload_cap`` bytes on the multipart routes
    ``upload_paths``, ``json_cap`` elsewhere. A declared ``Content-Length`` over the cap is
    refused at once; otherwise bytes are counted as they stream in and reading stops with a
    413 as soon as the cap is passed (nothing larger is ever held in memory). A body that has
    not arrived completely ``body_seconds`` after the request's headers is answered 408 and
    its connection closed (a client trickling its upload; see :mod:`genimage.serve.protocol`).

    Args:
        app: The ASGI app.
        json_cap: Largest body of the other routes, in bytes.
        upload_cap: Largest body of an upload route, in bytes.
        upload_paths: The upload routes.
        body_seconds (float | None): Deadline for the whole body in seconds; ``None`` (the
            default): none.
    """

    def __init__(self, app, json_cap: int, upload_cap: int, upload_paths: frozenset[str],
                 body_seconds: float | None = None) -> None:
        self.app, self.json_cap, self.upload_cap, self.upload_paths = app, json_cap, upload_cap, upload_paths
        self.body_seconds = body_seconds

    def message(self) -> str:
        return (f"the request body is too large: this service takes at most {self.json_cap} bytes of JSON and "
                f"{self.upload_cap} bytes of upload")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException

        cap = self.upload_cap if scope.get("path") in self.upload_paths else self.json_cap
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            start, body = _refuse(413, self.message())
            await send(start)
            await send(body)
            return
        seen, complete = 0, False
        deadline = None if self.body_seconds is None else asyncio.get_running_loop().time() + self.body_seconds

        async def counted():
            nonlocal seen, complete
            if complete or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0))
                except TimeoutError:
                    raise HTTPException(408, f"the request body did not arrive within {self.body_seconds:g} seconds",
                                        headers={"connection": "close"}) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > cap:
                    raise HTTPException(413, self.message())
            return message

        await self.app(scope, counted, send)
