"""`tdx-contention serve`: settings from the command line, safety checks, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from app.security import is_loopback, redact_logs
from app.settings import Settings
from app.store import Store, StoreError

TOKEN_ENV = "TDX_CONTENTION_TOKEN"
WS_MAX_BYTES = 64 * 1024  # uvicorn's cap on one WebSocket message (app/ws.py has its own)
GRACEFUL_S = 5  # SIGTERM: open exports and sockets get this long, then the process exits


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Settings for `args`; a parser error (exit 2) for an unsafe combination."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        parser.error(f"argument --host: binding {args.host} (not a loopback address) needs a "
                     f"token: pass --token TOKEN or set {TOKEN_ENV}")
    if not args.data_dir:
        parser.error("argument --data-dir: expected a directory, got ''")
    hosts = tuple(getattr(args, "allow_host", None) or ())
    if any(not name or "/" in name for name in hosts):
        parser.error("argument --allow-host: expected a host name such as dashboard.example")
    return Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), token=token,
                    allow_hosts=hosts, dask_scheduler=args.dask_scheduler)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the app starts: a port in use fails here, before
    the lifespan opens a run (so a refused second server leaves no trace in the history)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from app.server import create_app

    settings = settings_from(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:  # the data dir's faults (a file, corrupt history, another server) before anything
        Store(settings.data_dir).close()
    except StoreError as exc:
        print(f"tdx-contention serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        print(f"tdx-contention serve: error: cannot listen on {settings.host}:{settings.port}: "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    suffix = "/?token=<your token>" if settings.token_required else "/"
    logging.getLogger(__name__).info("dashboard on http://%s:%d%s", shown, settings.port, suffix)
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            log_level="info", ws_ping_interval=20, ws_ping_timeout=20,
                            ws_max_size=WS_MAX_BYTES, timeout_graceful_shutdown=GRACEFUL_S)
    redact_logs()  # after uvicorn.Config set up its loggers
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 2
