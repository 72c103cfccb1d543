"""WS /ws: hello, then the hub's messages; pings answered, bad messages told off."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.holders import CONFLICTS, HOLDERS
from app.hub import Hub
from app.runner import Runner
from app.schema import Error, Hello, Pong, ScenarioInfo
from app.security import POLICY_VIOLATION
from app.twin import COMPARE_FIELDS
from engine.afford import MAX_NESTING, nesting_depth
from engine.config import LIVE_FIELDS, MODULE_VERSIONS, POLICIES, RETRY_MAX_RANGE, VCPUS_RANGE
from engine.status import LEAVES, OPERAND_IDS, OPERANDS, TDX_OPERAND_BUSY, status_hex

router = APIRouter()
# Holders the records do not name but the model fixes: every TDH.VP.ENTER on which the
# zero-step filter fired tried SEPT_TREE exclusively (MODEL.md section 4), so BUSY on
# SEPT_TREE in a window with zero-step activations had those entries as a holder. The
# page names a holder only when its `series` shows activity in the window.
log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 4096  # a client sends pings; uvicorn's own cap (ws_max_size) is 64 KiB
RATE_PER_S, BURST = 20.0, 40  # messages a client may send: a token bucket


def hello(websocket: WebSocket) -> Hello:
    state = websocket.app.state
    runner: Runner = state.runner
    run = runner.run
    return Hello(
        run_id=run.run_id, state=runner.state,  # type: ignore[arg-type]
        config=run.sim.config.to_dict(),
        operands=list(OPERANDS), leaves=list(LEAVES),
        busy_status={op: status_hex(TDX_OPERAND_BUSY | OPERAND_IDS[op][0]) for op in OPERANDS},
        policies=list(POLICIES), module_versions=list(MODULE_VERSIONS),
        scenarios=[ScenarioInfo(**s) for s in state.catalogue.listing()],
        live_fields=list(LIVE_FIELDS),
        limits={"retry_max": list(RETRY_MAX_RANGE), "vcpus": list(VCPUS_RANGE)},
        frame_interval_ms=state.settings.frame_interval_ms,
        token_required=state.settings.token_required,
        bin_ns=run.bins.width_ns, controls=run.controls(),
        compare=runner.compare_snapshot(), compare_fields=list(COMPARE_FIELDS),
        holders=HOLDERS, conflicts=CONFLICTS,
        error=runner.error,
    )


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    hub: Hub = websocket.app.state.hub
    queue = hub.subscribe()
    try:
        await websocket.send_text(hello(websocket).model_dump_json())
        receiving = asyncio.create_task(_receive(websocket, hub, queue))
        tasks = {asyncio.create_task(_send(websocket, queue)), receiving}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        reason = receiving.result() if receiving.done() and not receiving.cancelled() \
            and receiving.exception() is None else None
        if reason is not None:  # after the sender stopped: one writer per socket
            log.warning("closed a WebSocket: %s", reason)
            await websocket.close(code=POLICY_VIOLATION, reason=reason)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(queue)
        if websocket.application_state == WebSocketState.CONNECTED:
            try:
                await websocket.close()
            except (RuntimeError, WebSocketDisconnect):  # the client went away meanwhile
                pass


async def _send(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        await websocket.send_text(await queue.get())


async def _receive(websocket: WebSocket, hub: Hub, queue: asyncio.Queue[str]) -> str | None:
    """Answer client messages through the client's own queue (one writer per socket).
    Returns the reason to close with (code 1008) when the client breaks the limits: too
    big, too deeply nested, or too many messages (one flooding client must not take the
    event loop from the others); None when the client went away."""
    allowance, last = float(BURST), time.monotonic()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        now = time.monotonic()
        allowance = min(float(BURST), allowance + (now - last) * RATE_PER_S)
        last = now
        if allowance < 1:
            return f"more than {RATE_PER_S:g} messages a second"
        allowance -= 1
        text = message.get("text")
        if text is None:
            hub.offer(queue, Error(message="send JSON text, not binary").model_dump_json())
            continue
        if len(text) > MAX_MESSAGE_CHARS:
            return f"message of {len(text)} characters; at most {MAX_MESSAGE_CHARS}"
        if nesting_depth(text) > MAX_NESTING:
            return f"message nested more than {MAX_NESTING} levels deep"
        try:
            data = json.loads(text)
        except ValueError:
            hub.offer(queue, Error(message="not valid JSON").model_dump_json())
            continue
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "ping":
            hub.offer(queue, Pong().model_dump_json())
        else:
            hub.offer(queue, Error(message=f"unknown message type {kind!r}; known: ping")
                      .model_dump_json())
