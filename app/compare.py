"""The compare routes: PUT, GET and DELETE /api/compare (a twin of the current run)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Security

from app.openapi import BAD_HOST, BUSY, CHANGES, PROBLEMS, bearer
from app.runner import Runner
from app.security import require_token
from engine.errors import ConfigError, ConfigErrors

router = APIRouter(tags=["compare"], responses={**BAD_HOST, **PROBLEMS})
changes = APIRouter(tags=["compare"], dependencies=[Depends(require_token), Security(bearer)],
                    responses={**BAD_HOST, **CHANGES, **PROBLEMS, **BUSY})
COMPARE_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": "the live fields the twin changes: some of policy, retry_max, zero_step",
    "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {"policy": {"type": "string"}, "zero_step": {"type": "boolean"},
                       "retry_max": {"type": "integer", "minimum": 0, "maximum": 1024}}}}},
}}


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


@router.get("/api/compare", tags=["compare"], responses=BUSY)
async def get_compare(request: Request) -> dict[str, Any]:
    """Whether a twin runs: {"on", "changes", "run_id"}."""
    return await _runner(request).compare_info()


@changes.put("/api/compare", tags=["compare"], openapi_extra=COMPARE_BODY, responses=PROBLEMS)
async def put_compare(request: Request) -> dict[str, Any]:
    """Start a twin with the body's live fields changed (422 naming each bad one)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ConfigErrors([ConfigError("body", "must be a JSON object of live fields")]) from None
    return await _runner(request).compare_on(body)


@changes.delete("/api/compare", tags=["compare"])
async def delete_compare(request: Request) -> dict[str, Any]:
    """Stop the twin (it stays in the runs list)."""
    return await _runner(request).compare_off()
