"""`tdx-contention serve`: settings from the command line, safety checks, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from app.security import is_loopback
from app.settings import Settings

TOKEN_ENV = "TDX_CONTENTION_TOKEN"


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Settings for `args`; a parser error (exit 2) for an unsafe combination."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        parser.error(f"argument --host: binding {args.host} (not a loopback address) needs a "
                     f"token: pass --token TOKEN or set {TOKEN_ENV}")
    return Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), token=token,
                    dask_scheduler=args.dask_scheduler)


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import uvicorn

    from app.server import create_app

    settings = settings_from(args, parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    suffix = "/?token=<your token>" if settings.token_required else "/"
    logging.getLogger(__name__).info("dashboard on http://%s:%d%s", shown, settings.port, suffix)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", ws_ping_interval=20, ws_ping_timeout=20)
    return 0
