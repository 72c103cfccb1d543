"""Safety of the server: one ASGI middleware (Host allow-list, cross-site refusal, body
limit, headers, the token cookie), the bearer token, and the access log's redaction."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "ip6-localhost")
WILDCARDS = ("0.0.0.0", "::", "")
CHANGING_METHODS = frozenset({"PATCH", "PUT", "POST", "DELETE"})
MAX_BODY_BYTES = 1024 * 1024
TOKEN_COOKIE = "tdx_token"
POLICY_VIOLATION = 1008  # RFC 6455: a message (or handshake) broke this server's policy
SAFETY_HEADERS = [
    (b"content-security-policy", b"frame-ancestors 'self'"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class HostPolicy:
    """Which `Host` header names reach this server: its bind address (any address of the
    machine when bound to a wildcard), `localhost` when it listens on loopback, and the
    `--allow-host` names. A DNS-rebinding page sends its own name, which is none of them."""

    def __init__(self, bind: str, allowed: Iterable[str] = ()) -> None:
        self.bind = bind.strip("[]").lower()
        self.names = {name.strip("[]").lower() for name in allowed}
        if self.bind not in WILDCARDS and _ip(self.bind) is None:
            self.names.add(self.bind)  # bound by name
        self.loopback = self.bind in WILDCARDS or is_loopback(self.bind)

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = _hostport(host_header, "")[0]
        if name in self.names:
            return True
        if name in LOOPBACK_NAMES:
            return self.loopback
        address = _ip(name)
        if address is None:
            return False
        if self.bind in WILDCARDS:
            return True  # a literal address of this machine: a browser sent it as typed
        bound = _ip(self.bind)
        return address == bound or (address.is_loopback and bound is not None
                                    and bound.is_loopback)

    def describe(self) -> str:
        shown = sorted(self.names | ({"localhost"} if self.loopback else set()))
        own = "this machine's addresses" if self.bind in WILDCARDS else self.bind
        return ", ".join([own, *shown])


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is set, or `authorization` is `Bearer <expected>`."""
    if expected is None:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and _same(given.strip(), expected)


def _same(given: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str; as bytes any header text compares safely.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def cookie_token(cookie_header: str | None) -> str | None:
    """The token the page's cookie carries, or None."""
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except Exception:  # a malformed Cookie header is no token, not an error
        return None
    morsel = jar.get(TOKEN_COOKIE)
    return None if morsel is None else unquote(morsel.value)


def require_token(request: Request) -> None:
    """Dependency of every state-changing route: 401 without the token (the header, or
    the cookie set when the page was opened with ?token=)."""
    expected = request.app.state.settings.token
    if expected is None or token_ok(expected, request.headers.get("authorization")):
        return
    cookie = cookie_token(request.headers.get("cookie"))
    if cookie is not None and _same(cookie, expected):
        return
    raise HTTPException(
        status_code=401,
        detail="this server needs a token for changes: send 'Authorization: Bearer <token>', "
               "or open the page once as /?token=<token>",
        headers={"WWW-Authenticate": "Bearer"},
    )


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A browser's Origin must name the host the request was sent to; no Origin is fine.

    Browsers always send Origin on WebSocket handshakes and cross-site POSTs, so a page on
    another site cannot drive a local dashboard; command-line clients send none.
    """
    if origin is None:
        return True
    if not host:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default = "80" if parts.scheme == "http" else "443"
    return _hostport(parts.netloc, default) == _hostport(host, default)


def _hostport(netloc: str, default_port: str) -> tuple[str, str]:
    netloc = netloc.lower().rsplit("@", 1)[-1]
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else default_port
        return host, port or default_port
    if netloc.count(":") > 1:  # a bare IPv6 address
        return netloc, default_port
    host, _, port = netloc.partition(":")
    return host, port or default_port


class Guard:
    """The middleware: every request and WebSocket handshake passes here first."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, token: str | None) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._refusal(scope, headers)
        if scope["type"] == "websocket":
            if problem is not None:
                logging.getLogger(__name__).warning("refused a WebSocket: %s", problem[1])
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": POLICY_VIOLATION,
                            "reason": problem[1][:120]})
                return
            await self.app(scope, receive, send)
            return
        if problem is None:
            body = await _read_body(receive, headers)
            if body is None:
                problem = (413, f"request body larger than {MAX_BODY_BYTES} bytes")
        if problem is not None:
            await _refuse(send, *problem)
            return
        await self.app(scope, _replay(body, receive), self._with_headers(scope, send))

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host")
        if not self.hosts.allows(host):
            return 400, (f"Host {host!r} is not this server's ({self.hosts.describe()}); "
                         "serve with --allow-host NAME to reach it under another name")
        origin = headers.get("origin")
        cross_site = headers.get("sec-fetch-site") == "cross-site"
        if scope["type"] == "websocket" or scope["method"] in CHANGING_METHODS:
            if not origin_allowed(origin, host):
                return 403, f"refused: a request from another origin ({origin!r})"
            if cross_site:
                return 403, "refused: a request from a page of another site"
        elif cross_site and scope["path"].startswith("/api/"):
            # Reading is harmless, but an export replays a whole run: a page of another
            # site must not be able to start a hundred of them with <img src=...>.
            return 403, "refused: the API is not for pages of other sites"
        return None

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        cookie = self._cookie(scope)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SAFETY_HEADERS)
                if cookie is not None:
                    extra.append((b"set-cookie", cookie))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)
        return sending

    def _cookie(self, scope: Scope) -> bytes | None:
        """Opening a page as /?token=... (any GET) with the right token sets the HttpOnly
        cookie that carries it from then on (the page then drops it from its URL)."""
        if self.token is None or scope["method"] != "GET" or not scope.get("query_string"):
            return None
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if not given or not _same(given[0], self.token):
            return None
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        value = quote(self.token, safe="")
        return f"{TOKEN_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/{secure}".encode()


async def _read_body(receive: Receive, headers: Headers) -> bytes | None:
    """The whole request body, or None once it is larger than MAX_BODY_BYTES."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes | None, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        return await receive()  # later calls wait for the disconnect, as before
    return replay


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *SAFETY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class RedactToken(logging.Filter):
    """Replaces ?token=... in log records (uvicorn's access log writes each request line)."""

    PATTERN = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1<redacted>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        return True

    def _clean(self, value: Any) -> Any:
        return self.PATTERN.sub(r"\1<redacted>", value) if isinstance(value, str) else value


def redact_logs(names: Iterable[str] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Install RedactToken on uvicorn's loggers (after uvicorn configured logging)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) for f in logger.filters):
            logger.addFilter(RedactToken())
