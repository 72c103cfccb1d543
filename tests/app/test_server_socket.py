"""Over a real socket: frame rate, a stuck client does not slow others, Origin refused."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
import websockets
from live_server import live_server
from websockets.exceptions import InvalidStatus

from app.settings import Settings


async def _frame_times(url: str, seconds: float) -> list[float]:
    """Arrival times of the frames one client receives in `seconds`."""
    times: list[float] = []
    async with websockets.connect(url) as ws:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            if message["type"] == "frame":
                times.append(time.monotonic())
    return times


def test_frames_arrive_at_the_promised_rate(tmp_path: Path) -> None:
    with live_server(Settings(data_dir=tmp_path)) as base:
        httpx.post(base + "/api/run/start").raise_for_status()
        times = asyncio.run(_frame_times(base.replace("http", "ws") + "/ws", 2.0))
    assert len(times) >= 10  # >= 5 frames a second
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.5


def _stuck_client(base: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a tiny window fills fast
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


def test_a_client_that_never_reads_does_not_slow_another(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, frame_interval_ms=20)  # 50 frames/s: fill it fast
    with live_server(settings) as base:
        httpx.post(base + "/api/run/start").raise_for_status()
        url = base.replace("http", "ws") + "/ws"
        alone = len(asyncio.run(_frame_times(url, 1.0)))
        stuck = [_stuck_client(base) for _ in range(3)]
        try:
            time.sleep(1.0)  # let their buffers fill
            together = len(asyncio.run(_frame_times(url, 1.0)))
            assert httpx.get(base + "/healthz", timeout=2).json() == {"ok": True}
        finally:
            for sock in stuck:
                sock.close()
    assert together >= 0.8 * alone, (alone, together)


async def _connect(url: str, origin: str | None) -> str:
    async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
        hello: str = json.loads(await ws.recv())["type"]
        return hello


def test_foreign_origin_is_refused_over_a_socket(tmp_path: Path) -> None:
    with live_server(Settings(data_dir=tmp_path)) as base:
        url = base.replace("http", "ws") + "/ws"
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_connect(url, "http://evil.example"))
        assert refused.value.response.status_code == 403
        assert asyncio.run(_connect(url, base)) == "hello"
        assert asyncio.run(_connect(url, None)) == "hello"
