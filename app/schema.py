"""The wire schema: REST bodies and every WebSocket message, as pydantic models.

The request models mirror engine/config.py's validation (tests/app/test_schema.py keeps
every field, range and name agreeing); the engine still validates on its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

from engine.chrome import BUSY_INSTANTS_MAX_RECORDS
from engine.export import (
    BYTES_PER_RECORD,
    BYTES_PER_RECORD_CHROME_LARGE,
    EXTENSIONS,
    FORMATS,
    LARGE_EXPORT_BYTES,
    MEDIA_TYPES,
)

EXPORT_LABELS = {"perfetto": "Perfetto trace", "jsonl": "JSONL", "csv": "CSV",
                 "chrome": "Chrome trace"}


def _number(value: Any) -> Any:
    """JSON numbers only: a bool or a numeric string is not a speed (as in the engine)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number > 0")
    return value


# One type per config field, the engine's ranges (engine/config.py check_field).
Scenario = Annotated[str, Field(strict=True, min_length=1,
                                description="a scenario name (GET /api/scenarios)")]
Policy = Annotated[Literal["none", "bounded", "vmm_lock", "upstream", "backoff"],
                   Field(description="KVM's BUSY policy (live)")]
RetryMax = Annotated[int, Field(strict=True, ge=0, le=1024,
                                description="retries before a BUSY is handed back (live)")]
ZeroStep = Annotated[bool, Field(strict=True, description="the zero-step mitigation (live)")]
Vcpus = Annotated[int, Field(strict=True, ge=1, le=512)]
ModuleVersion = Annotated[Literal["1.0", "1.5"], Field(description="TDX module version")]
Seed = Annotated[int, Field(strict=True, ge=0)]
Speed = Annotated[float, BeforeValidator(_number),
                  Field(gt=0, le=1e9, allow_inf_nan=False,
                        description="simulated microseconds per wall-clock second (live)")]

CONFIG_EXAMPLE: dict[str, Any] = {"scenario": "zero-step", "policy": "bounded", "retry_max": 16,
                  "zero_step": True, "vcpus": 8, "module_version": "1.5", "seed": 1,
                  "speed": 1000.0}


class ConfigModel(BaseModel):
    """A run's whole config (CONTRACT.md "Config")."""

    model_config = ConfigDict(title="Config", extra="forbid",
                              json_schema_extra={"examples": [CONFIG_EXAMPLE]})

    scenario: Scenario
    policy: Policy
    retry_max: RetryMax
    zero_step: ZeroStep
    vcpus: Vcpus
    module_version: ModuleVersion
    seed: Seed
    speed: Speed


class ConfigPatch(BaseModel):
    """Some config fields: policy, retry_max, zero_step and speed apply to the running
    simulation at once; any other field starts a new run. (None means "not given": a
    JSON null is handed to the engine, which refuses it by name.)"""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"retry_max": 4}, {"policy": "upstream", "zero_step": False}, {"vcpus": 64}]})

    scenario: Scenario | SkipJsonSchema[None] = None
    policy: Policy | SkipJsonSchema[None] = None
    retry_max: RetryMax | SkipJsonSchema[None] = None
    zero_step: ZeroStep | SkipJsonSchema[None] = None
    vcpus: Vcpus | SkipJsonSchema[None] = None
    module_version: ModuleVersion | SkipJsonSchema[None] = None
    seed: Seed | SkipJsonSchema[None] = None
    speed: Speed | SkipJsonSchema[None] = None


class RunState(BaseModel):
    state: Literal["running", "paused"]
    run_id: str


class LeafCounts(BaseModel):
    attempts: int
    busy: int
    retries: int
    giveups: int


class Summary(BaseModel):
    """A run's counts (CONTRACT.md "Summary"); further figures may follow."""

    model_config = ConfigDict(extra="allow")

    config: ConfigModel
    sim_ns: int
    events: int
    attempts: int
    busy: int
    retries: int
    giveups: int
    zero_step_activations: int
    busy_by_operand: dict[str, int]
    by_leaf: dict[str, LeafCounts]


class Stats(Summary):
    """GET /api/stats: the current run's summary, its id and state."""

    run_id: str
    state: Literal["running", "paused"]
    lagging: bool


class RunListing(BaseModel):
    """One run kept in the data dir."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    created: float
    scenario: str
    config: ConfigModel
    end_ns: int
    controls: int
    summary: dict[str, Any]
    current: bool


class Health(BaseModel):
    ok: bool
    detail: str | None = None  # why the runner is down (with ok false, a 503)


class Deleted(BaseModel):
    deleted: str


class HTTPError(BaseModel):
    """A 400, 401, 403, 404, 410 or 503: what went wrong, in one sentence."""

    detail: str


class _Message(BaseModel):
    """A WebSocket message: every field it may carry is declared (the schema says so)."""

    model_config = ConfigDict(extra="forbid")


class ScenarioInfo(BaseModel):
    name: str
    description: str
    builtin: bool = True
    td: dict[str, Any] = {}  # the config defaults its [td] table sets


class ExportFormat(BaseModel):
    """An export format as the page offers it, with what it needs to estimate a size."""

    format: str
    label: str
    extension: str
    media_type: str
    bytes_per_record: int
    # Above this many records the format gets leaner (Chrome: no BUSY instants).
    lean_above_records: int | None = None
    lean_bytes_per_record: int | None = None


def export_formats() -> list[ExportFormat]:
    """Every export format, the one to prefer (Perfetto's native trace) first."""
    order = sorted(FORMATS, key=lambda f: f != "perfetto")
    return [ExportFormat(
        format=f, label=EXPORT_LABELS[f], extension=EXTENSIONS[f], media_type=MEDIA_TYPES[f],
        bytes_per_record=BYTES_PER_RECORD[f],
        lean_above_records=BUSY_INSTANTS_MAX_RECORDS if f == "chrome" else None,
        lean_bytes_per_record=BYTES_PER_RECORD_CHROME_LARGE if f == "chrome" else None,
    ) for f in order]


class Hello(_Message):
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
    bin_ns: int = 0
    controls: list[dict[str, Any]] = []
    compare: dict[str, Any] = {"on": False, "changes": {}, "run_id": None}
    compare_fields: list[str] = []
    holders: list[dict[str, str]] = []  # lock holders the records imply (app/holders.py)
    # module version -> operand -> failing leaf -> leaves whose lock set conflicts on it
    conflicts: dict[str, dict[str, dict[str, list[str]]]] = {}
    error: str | None = None  # why the run was paused by a failure
    units: dict[str, str] = {"t_ns": "simulated nanoseconds",
                             "speed": "simulated microseconds per wall-clock second"}
    exports: list[ExportFormat] = Field(default_factory=export_formats)
    large_export_bytes: int = LARGE_EXPORT_BYTES  # the page says the size of bigger exports


class Totals(BaseModel):
    events: int
    attempts: int
    busy: int
    retries: int
    giveups: int
    zero_step_activations: int


class Frame(_Message):
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
    # Fixed bins of simulated time: each piece {"i": bin index (t = i * bin_ns), counts};
    # a bin's pieces from consecutive frames add up (see app/liverun.py Bins).
    bin_ns: int = 0
    bins: list[dict[str, Any]] = []
    calls_since_change: dict[str, int] = {}  # since retry max or policy last changed
    pace: dict[str, Any] | None = None  # achieved / requested speed, frames a second
    twin: dict[str, Any] | None = None  # the twin's counters for this frame, when comparing


class State(_Message):
    """Broadcast whenever the run, its state or its config changes."""

    type: Literal["state"] = "state"
    run_id: str
    state: Literal["running", "paused"]
    config: dict[str, Any]
    lagging: bool = False
    compare: dict[str, Any] = {"on": False, "changes": {}, "run_id": None}
    controls: list[dict[str, Any]] = []  # live changes: {"t_ns", "changes": {f: [old, new]}}
    bin_ns: int = 0
    error: str | None = None  # why the run was paused by a failure (engine or storage)


class Pong(_Message):
    type: Literal["pong"] = "pong"


class Error(_Message):
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


class ScenariosChanged(_Message):
    """Broadcast when a scenario was posted: the new list."""

    type: Literal["scenarios"] = "scenarios"
    scenarios: list[ScenarioInfo]


ServerMessage = Annotated[Hello | Frame | State | ScenariosChanged | Pong | Error,
                          Field(discriminator="type")]
SERVER_MESSAGES: TypeAdapter[Any] = TypeAdapter(ServerMessage)


def ws_json_schema() -> dict[str, Any]:
    """The JSON Schema of every message the server sends on /ws (one of, by `type`)."""
    schema: dict[str, Any] = SERVER_MESSAGES.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tdx-contention WebSocket messages (server to client)"
    return schema
