"""WS /ws in-process: hello, frames, live changes in frames, client messages, Origin."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import jsonl
from starlette.websockets import WebSocketDisconnect

from engine.status import LEAVES, OPERANDS


def next_of(ws: Any, kind: str, limit: int = 200) -> dict[str, Any]:
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


def test_hello_describes_everything_the_page_needs(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
    assert hello["type"] == "hello"
    assert hello["state"] == "paused"
    assert hello["operands"] == list(OPERANDS) and hello["leaves"] == list(LEAVES)
    assert hello["busy_status"]["SEPT_TREE"] == "0x8000020000000092"
    assert hello["config"] == client.get("/api/config").json()
    assert hello["run_id"] == client.get("/api/stats").json()["run_id"]
    assert "bounded" in hello["policies"] and hello["module_versions"] == ["1.0", "1.5"]
    assert "upstream_6_17" in hello["policies"] and "TDH.VP.CREATE" in hello["leaves"]
    assert {"boot", "conversion", "zero-step"} <= {s["name"] for s in hello["scenarios"]}
    assert hello["live_fields"] == ["policy", "retry_max", "zero_step", "speed"]
    assert hello["limits"] == {"retry_max": [0, 1024], "vcpus": [1, 512]}
    assert hello["frame_interval_ms"] == 100 and hello["token_required"] is False


def test_frames_follow_while_running(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        client.post("/api/run/start")
        assert next_of(ws, "state")["state"] == "running"
        frames = [next_of(ws, "frame") for _ in range(3)]
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    for before, after in zip(frames, frames[1:], strict=False):
        assert after["t0_ns"] == before["t_ns"]
        assert after["totals"]["attempts"] == before["totals"]["attempts"] + after["attempts"]
    frame = frames[-1]
    assert set(frame["busy"]) == set(OPERANDS) and set(frame["busy_by_leaf"]) == set(LEAVES)
    for key in ("t_ns", "attempts", "retries", "giveups", "zero_step_activations",
                "calls_by_attempts", "lagging", "retry_max", "totals", "run_id"):
        assert key in frame


def test_a_live_change_shows_in_frames_stats_and_export(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        client.post("/api/run/start")
        while next_of(ws, "frame")["t_ns"] == 0:  # a starved first tick may simulate nothing
            pass
        client.patch("/api/config", json={"retry_max": 2, "policy": "upstream"})
        state = next_of(ws, "state")
        assert state["config"]["retry_max"] == 2
        assert next_of(ws, "frame")["retry_max"] == 2
    client.post("/api/run/pause")
    stats = client.get("/api/stats").json()
    assert stats["config"]["retry_max"] == 2 and stats["config"]["policy"] == "upstream"
    controls = [r for r in jsonl(client.get("/api/export").text) if r["kind"] == "control"]
    assert len(controls) == 1
    assert controls[0]["retry_max"] == 2 and controls[0]["policy"] == "upstream"
    assert 0 < controls[0]["t_ns"] <= stats["sim_ns"]


def test_ping_pong_and_bad_messages_keep_the_connection(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_text("{not json")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "dance"})
        error = ws.receive_json()
        assert error["type"] == "error" and "dance" in error["message"]
        ws.send_json([1, 2])
        assert ws.receive_json()["type"] == "error"
        ws.send_bytes(b"\x00")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_reset_and_new_run_are_broadcast(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        run_id = client.post("/api/run/reset").json()["run_id"]
        state = next_of(ws, "state")
        assert state["run_id"] == run_id and state["state"] == "paused"
        client.patch("/api/config", json={"scenario": "boot"})
        state = next_of(ws, "state")
        assert state["config"]["scenario"] == "boot" and state["run_id"] != run_id


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8080",
                                    "https://attacker.example", "null"])
def test_foreign_origin_is_refused(client: TestClient, origin: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws", headers={"origin": origin}):
            pass
    assert refused.value.code == 1008


def test_own_origin_is_accepted(client: TestClient) -> None:
    with client.websocket_connect("/ws", headers={"origin": "http://127.0.0.1:8000"}) as ws:
        assert ws.receive_json()["type"] == "hello"
