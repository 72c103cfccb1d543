"""A real `tdx-contention serve` process: kill -9 loses nothing the user saw or did, SIGTERM
never hangs, and a second server on the same data dir or port is refused without a trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from live_server import free_port, serving
from websockets.sync.client import connect


def _old_run(base: str, run_id: str) -> dict[str, Any]:
    runs = {r["run_id"]: r for r in httpx.get(f"{base}/api/runs").json()}
    run: dict[str, Any] = runs[run_id]
    return run


def test_kill_9_right_after_a_patch_keeps_the_control(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, process):
        run_id = httpx.post(f"{base}/api/run/start").json()["run_id"]
        assert httpx.patch(f"{base}/api/config", json={"retry_max": 3}).status_code == 200
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    with serving(tmp_path) as (base, _):
        assert _old_run(base, run_id)["controls"] == 1  # the change is in its timeline


def test_kill_9_right_after_a_frame_keeps_what_it_showed(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, process):
        with connect(base.replace("http", "ws") + "/ws") as ws:
            json.loads(ws.recv())  # hello
            httpx.post(f"{base}/api/run/start").raise_for_status()
            shown: dict[str, Any] = {}
            while not shown.get("totals", {}).get("events"):
                message = json.loads(ws.recv(timeout=10))
                if message["type"] == "frame":
                    shown = message
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    with serving(tmp_path) as (base, _):
        run = _old_run(base, shown["run_id"])
        assert run["end_ns"] >= shown["t_ns"]
        export = httpx.get(f"{base}/api/runs/{shown['run_id']}/export").text.splitlines()
        assert len(export) >= shown["totals"]["events"]


def test_sigterm_ends_the_server_promptly_even_with_clients(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, process):
        httpx.post(f"{base}/api/run/start").raise_for_status()
        with connect(base.replace("http", "ws") + "/ws") as ws:
            ws.recv()
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down cleanly
            assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - began < 15


def test_a_second_server_on_the_data_dir_or_port_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path / "a") as (base, _):
        port = base.rsplit(":", 1)[1]
        same_dir = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "a")], capture_output=True, text=True, timeout=30)
        assert same_dir.returncode == 2
        assert "another server uses this data dir" in same_dir.stderr
        assert f"pid {os.getpid()}" not in same_dir.stderr  # the server's pid, not ours
        before = [r["run_id"] for r in httpx.get(f"{base}/api/runs").json()]
        same_port = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", port, "--data-dir",
             str(tmp_path / "a")], capture_output=True, text=True, timeout=30)
        assert same_port.returncode == 2
        other_dir = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", port, "--data-dir",
             str(tmp_path / "b")], capture_output=True, text=True, timeout=30)
        assert other_dir.returncode == 2 and "cannot listen" in other_dir.stderr
        assert "Traceback" not in same_dir.stderr + same_port.stderr + other_dir.stderr
        assert [r["run_id"] for r in httpx.get(f"{base}/api/runs").json()] == before
    with serving(tmp_path / "b") as (base, _):  # the refused server left no phantom run
        assert len(httpx.get(f"{base}/api/runs").json()) == 1
