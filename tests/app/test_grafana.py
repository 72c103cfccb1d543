"""The Grafana dashboard's PromQL, run against a real Prometheus scraping a real server.

Grafana itself is not packaged here; what can break is the queries (a renamed metric, a
label that is not there, a division whose sides do not match), and those are checked by
the Prometheus that Grafana would ask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tdx-contention.json"
RATE_INTERVAL = "6s"  # Grafana's $__rate_interval for a 1 s scrape, as the test uses


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel["targets"]]


def _wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`tdx-contention serve` in a subprocess, running at 20 ms of TD time a second."""
    port = free_port()
    env = {**os.environ, "TDX_CONTENTION_TOKEN": ""}
    env.pop("TDX_CONTENTION_TOKEN")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--data-dir",
         str(tmp_path / "data")], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/healthz", 30, process)
        httpx.patch(base + "/api/config", json={"speed": 20_000}).raise_for_status()
        httpx.post(base + "/api/run/start").raise_for_status()
        yield base
    finally:
        _stop(process)


@pytest.fixture
def prometheus(tmp_path: Path, server: str) -> Iterator[str]:
    """A real Prometheus on loopback scraping the server every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus; scripts/test.sh "
                    "installs it)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: tdx-contention\n    static_configs:\n"
        f"      - targets: ['{server.removeprefix('http://')}']\n")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/-/ready", 30, process)
        yield base
    finally:
        _stop(process)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(prometheus + "/api/v1/query",
                      params={"query": expr.replace("$__rate_interval", RATE_INTERVAL)})
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_every_dashboard_query_returns_data(prometheus: str, request: pytest.FixtureRequest,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Each PromQL expression of the dashboard, asked of a Prometheus that scrapes a live
    server, returns at least one series with a finite value (-v prints them)."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    end = time.monotonic() + 40
    results: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < end:
        results = {expr: query(prometheus, expr) for _, expr in exprs}
        if all(_finite(r) for r in results.values()):
            break
        time.sleep(1)
    missing = [title for title, expr in exprs if not _finite(results[expr])]
    assert not missing, f"no data for: {missing}"
    if request.config.getoption("verbose") <= 0:
        return
    with capsys.disabled():  # the figures: what each panel shows after a few seconds
        for title, expr in exprs:
            shown = ", ".join(f"{_legend(s['metric'])}={float(s['value'][1]):.4g}"
                              for s in results[expr][:4])
            print(f"\n  {title}: {len(results[expr])} series: {shown}", end="")


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def _legend(metric: dict[str, str]) -> str:
    keys = ("run", "operand", "leaf", "policy", "run_id", "build")
    return "/".join(metric[k] for k in keys if k in metric) or "-"
