"""GET /api/ws-schema.json: the JSON Schema of the WebSocket messages, and every message the
server sends validates against it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

jsonschema = pytest.importorskip("jsonschema")

SCENARIO = """
name = "tiny"
description = "a small TD for the schema test"
duration_us = 1000
[td]
vcpus = 2
"""


def _validator(client: TestClient) -> Any:
    schema = client.get("/api/ws-schema.json").json()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_message_kind_the_server_sends_validates(client: TestClient) -> None:
    """hello, state, frame, scenarios, pong and error, as sent during a short session,
    each validate; the schema tells them apart by `type`."""
    validator = _validator(client)
    seen: dict[str, int] = {}
    with client.websocket_connect("/ws") as ws:
        def take(until: str, limit: int = 200) -> None:
            for _ in range(limit):
                message = ws.receive_json()
                errors = [e.message for e in validator.iter_errors(message)]
                assert not errors, (message.get("type"), errors[:3])
                seen[message["type"]] = seen.get(message["type"], 0) + 1
                if message["type"] == until:
                    return
            raise AssertionError(f"no {until} message")

        take("hello")
        client.post("/api/run/start").raise_for_status()
        take("state")
        for _ in range(3):
            take("frame")
        client.patch("/api/config", json={"retry_max": 5}).raise_for_status()
        take("state")
        reply = client.post("/api/scenarios", content=SCENARIO)
        assert reply.status_code == 201, reply.text
        take("scenarios")
        ws.send_text('{"type": "ping"}')
        take("pong")
        ws.send_text("not json")
        take("error")
        client.post("/api/run/pause").raise_for_status()
        take("state")
    assert {"hello", "state", "frame", "scenarios", "pong", "error"} <= set(seen)


def test_schema_refuses_what_the_server_never_sends(client: TestClient) -> None:
    """An unknown type, a frame missing a count, or an undeclared field do not validate:
    the schema is a real check, not "any object"."""
    validator = _validator(client)
    assert not validator.is_valid({"type": "surprise"})
    assert not validator.is_valid({"type": "pong", "extra": 1})
    assert not validator.is_valid({"type": "state", "run_id": "x", "state": "running"})
    assert validator.is_valid({"type": "state", "run_id": "x", "state": "running",
                               "config": {}, "lagging": False})
