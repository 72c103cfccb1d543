"""The wire schema: every message the server sends over WebSocket, tagged by `type`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ScenarioInfo(BaseModel):
    name: str
    description: str
    builtin: bool = True


class Hello(BaseModel):
    """First message on a new connection: everything the page needs to lay itself out."""

    type: Literal["hello"] = "hello"
    run_id: str
    state: Literal["running", "paused"]
    config: dict[str, Any]
    operands: list[str]
    leaves: list[str]
    busy_status: dict[str, str]
    policies: list[str]
    module_versions: list[str]
    scenarios: list[ScenarioInfo]
    live_fields: list[str]
    limits: dict[str, list[int]]
    frame_interval_ms: int
    token_required: bool
    error: str | None = None  # why the run was paused by a failure
    units: dict[str, str] = {"t_ns": "simulated nanoseconds",
                             "speed": "simulated microseconds per wall-clock second"}


class Totals(BaseModel):
    events: int
    attempts: int
    busy: int
    retries: int
    giveups: int
    zero_step_activations: int


class Frame(BaseModel):
    """What one tick of the runner produced; counts are within the frame except `totals`."""

    type: Literal["frame"] = "frame"
    run_id: str
    seq: int
    t0_ns: int
    t_ns: int
    attempts: int
    retries: int
    giveups: int
    busy: dict[str, int]
    busy_by_leaf: dict[str, int]
    zero_step_activations: int
    calls_by_attempts: dict[str, int]
    lagging: bool
    retry_max: int
    totals: Totals
    sent_at: float = 0.0  # wall-clock time (Unix seconds) the runner published the frame


class State(BaseModel):
    """Broadcast whenever the run, its state or its config changes."""

    type: Literal["state"] = "state"
    run_id: str
    state: Literal["running", "paused"]
    config: dict[str, Any]
    lagging: bool = False
    error: str | None = None  # why the run was paused by a failure (engine or storage)


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


class Error(BaseModel):
    type: Literal["error"] = "error"
    message: str


class FieldProblem(BaseModel):
    field: str
    message: str


class Problems(BaseModel):
    """A 422 body: each bad field with its message, and all of them in one line."""

    detail: list[FieldProblem]
    message: str

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> Problems:
        return cls(detail=[FieldProblem(field=f, message=m) for f, m in problems],
                   message="; ".join(f"{f}: {m}" for f, m in problems))
