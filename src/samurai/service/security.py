"""Who may use the service: bearer token, ``Host`` allow-list and same-origin checks.

`Guard` is a plain ASGI middleware in front of every route:

- ``Host``: the request must name this server (the bound host's names, or ``--allowed-host``),
  which defeats DNS rebinding, where a hostile page's own name resolves to 127.0.0.1.
- Origin: a browser's state-changing request (POST, PUT, PATCH, DELETE) from another origin is
  refused unless ``--cors-origin`` names it; so is a CORS preflight.
- Token: with a token set, every ``/api`` request carries it as ``Authorization: Bearer <token>``
  or in the ``samurai_token`` cookie the web page sets (so that ``<video>``, download links and
  Server-Sent Events, which cannot send headers, work too). The page, its static files, the
  OpenAPI docs and ``/healthz`` stay open.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from samurai.service.schemas import ServiceSettings, is_loopback

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "samurai_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_names(settings: ServiceSettings) -> frozenset[str] | None:
    """``Host`` names accepted (lower case, no port); None = any (``--allowed-host '*'``)."""
    if "*" in settings.allowed_hosts:
        return None
    names = {settings.host.strip("[]").lower()}
    names.update(h.strip("[]").lower() for h in settings.allowed_hosts)
    if is_loopback(settings.host) or settings.host in _WILDCARD_HOSTS:
        names.update({"127.0.0.1", "localhost", "::1"})
    if settings.host in _WILDCARD_HOSTS:  # every interface: this machine's names and addresses
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            with contextlib.suppress(OSError):
                names.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
    return frozenset(n for n in names if n)


def _split_host(value: str) -> tuple[str, str]:
    """``(name, port)`` of a ``Host`` header value: ``[::1]:8000`` -> ``("::1", "8000")``."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name, port
    return value, ""


def _origin_netloc(origin: str) -> str | None:
    """``host:port`` of an ``Origin`` value with the scheme's default port made explicit."""
    try:
        parts = urlsplit(origin)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return f"{parts.hostname.lower()}:{port}"


def same_origin(origin: str, host: str) -> bool:
    """Whether ``Origin`` names the server the ``Host`` header names.

    Without a port in ``Host`` (a reverse proxy on 80/443) the names alone are compared, since
    the scheme the browser used is not known here.
    """
    netloc = _origin_netloc(origin)
    if netloc is None:
        return False
    name, port = _split_host(host)
    origin_name, origin_port = netloc.rsplit(":", 1)
    return origin_name.strip("[]") == name and (not port or port == origin_port)


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a presented token."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class Guard:
    """ASGI middleware enforcing the ``Host`` allow-list, same-origin writes and the token."""

    def __init__(self, app: ASGIApp, *, settings: ServiceSettings) -> None:
        self.app = app
        self.token = settings.token
        self.hosts = host_names(settings)
        self.cors = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": detail}).encode()
        extra = [(b"www-authenticate", b'Bearer realm="samurai"')] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.hosts is not None and _split_host(host)[0] not in self.hosts:
            shown = host[:80] if host else "(none)"
            return 400, f"Host {shown!r} is not served here; see --allowed-host"
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        cross = False
        if origin is not None:
            cross = not same_origin(origin, host) and origin.rstrip("/").lower() not in self.cors
        elif headers.get("sec-fetch-site") == "cross-site":
            cross = True
        if cross and (method not in SAFE_METHODS or method == "OPTIONS"):
            what = "CORS is off" if not self.cors else "the origin is not in --cors-origin"
            source = origin[:80] if origin else "another site"
            return 403, f"cross-origin {method} from {source!r} refused ({what})"
        if self.token is None or not scope.get("path", "").startswith("/api"):
            return None
        if method == "OPTIONS" and origin is not None:
            return None  # a CORS preflight from an allowed origin never carries the token
        if token_matches(self.token, _presented_token(headers)):
            return None
        return 401, "missing or wrong token: send 'Authorization: Bearer <token>'"


def _presented_token(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE and value:
            return unquote(value)
    return None
