"""WS /ws: hello, then the hub's messages; pings answered, bad messages told off."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from app.hub import Hub
from app.runner import Runner
from app.schema import Error, Hello, Pong, ScenarioInfo
from app.security import POLICY_VIOLATION
from engine.config import LIVE_FIELDS, MODULE_VERSIONS, POLICIES, RETRY_MAX_RANGE, VCPUS_RANGE
from engine.status import LEAVES, OPERAND_IDS, OPERANDS, TDX_OPERAND_BUSY, status_hex

router = APIRouter()
log = logging.getLogger(__name__)


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
        error=runner.error,
    )


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    hub: Hub = websocket.app.state.hub
    queue = hub.subscribe()
    try:
        await websocket.send_text(hello(websocket).model_dump_json())
        tasks = {asyncio.create_task(_send(websocket, queue)),
                 asyncio.create_task(_receive(websocket, hub, queue))}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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


async def _receive(websocket: WebSocket, hub: Hub, queue: asyncio.Queue[str]) -> None:
    """Answer client messages through the client's own queue (one writer per socket)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            hub.offer(queue, Error(message="send JSON text, not binary").model_dump_json())
            continue
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
