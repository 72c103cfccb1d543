"""Small helpers shared by the server tests."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient


def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    """Poll `predicate` until it holds; fail after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def run_for(client: TestClient, min_sim_ns: int) -> dict[str, Any]:
    """Start the run, let it reach `min_sim_ns` of simulated time, pause; the stats."""
    client.post("/api/run/start").raise_for_status()
    wait_for(lambda: client.get("/api/stats").json()["sim_ns"] >= min_sim_ns)
    client.post("/api/run/pause").raise_for_status()
    stats: dict[str, Any] = client.get("/api/stats").json()
    return stats


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]
