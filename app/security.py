"""Safety of the defaults: loopback detection, the bearer token, the WebSocket Origin check."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is set, or `authorization` is `Bearer <expected>`."""
    if expected is None:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


def require_token(request: Request) -> None:
    """Dependency of every state-changing route: 401 without the right bearer token."""
    expected = request.app.state.settings.token
    if not token_ok(expected, request.headers.get("authorization")):
        raise HTTPException(
            status_code=401,
            detail="this server needs 'Authorization: Bearer <token>' for changes "
                   "(open the page with ?token=...)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """A browser's Origin must name the host the request was sent to; no Origin is fine.

    Browsers always send Origin on WebSocket handshakes, so a page on another site cannot
    drive a local dashboard; command-line clients send none and are let in.
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
    host, _, port = netloc.partition(":")
    return host, port or default_port
