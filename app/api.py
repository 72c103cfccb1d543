"""The REST routes: config, run control, stats, exports, run history, scenarios, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import iterate_in_threadpool

from app.exports import Exports, accepts_gzip
from app.openapi import (
    BAD_HOST,
    BUSY,
    CHANGES,
    CONFLICT,
    EXPORT_BUSY,
    FORMAT_DOC,
    GONE,
    METRICS_RESPONSES,
    NO_SCENARIO,
    NOT_FOUND,
    PATCH_BODY,
    PROBLEMS,
    TOML_BODY,
    bearer,
    export_responses,
)
from app.runner import Recipe, Runner
from app.scenarios import ScenarioInUse
from app.schema import (
    ConfigModel,
    Deleted,
    Health,
    Problems,
    RunListing,
    RunState,
    ScenarioInfo,
    Stats,
    ws_json_schema,
)
from app.security import require_token
from app.store import RunRecord
from engine import afford
from engine.config import Config, validate
from engine.errors import ConfigErrors, ScenarioError
from engine.export import EXTENSIONS, FORMATS, MEDIA_TYPES, encode
from engine.scenario import builtin_scenario, parse
from engine.sim import replay

router = APIRouter(responses=BAD_HOST)
changes = APIRouter(dependencies=[Depends(require_token), Security(bearer)],
                    responses={**BAD_HOST, **CHANGES, **BUSY})


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


@router.get("/healthz", tags=["observability"], response_model=None,
            responses={200: {"model": Health}, 503: {"model": Health,
                                                     "description": "the runner is down"}})
async def healthz(request: Request) -> Response:
    down = _runner(request).down()
    if down is not None:
        return JSONResponse({"ok": False, "detail": f"the runner is down: {down}"}, 503)
    return JSONResponse({"ok": True})


@router.get("/api/config", tags=["config"], response_model=None,
            responses={200: {"model": ConfigModel}, **BUSY})
async def get_config(request: Request) -> dict[str, Any]:
    return _runner(request).run.sim.config.to_dict()


@changes.patch("/api/config", tags=["config"], response_model=None, openapi_extra=PATCH_BODY,
               responses={200: {"model": ConfigModel, "description": "the whole new config"},
                          **PROBLEMS})
async def patch_config(request: Request) -> Any:
    raw = await request.body()
    if afford.nesting_depth(raw.decode("utf-8", "replace")) > afford.MAX_NESTING:
        # refused before json.loads, which recurses once per level
        return _problems([("body", "must be a JSON object of config fields (nested more "
                                   f"than {afford.MAX_NESTING} levels deep)")])
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _problems([("body", "must be a JSON object of config fields")])
    if not isinstance(body, dict):
        return _problems([("body", "must be a JSON object of config fields")])
    return await _runner(request).patch(body)


@changes.post("/api/run/start", tags=["run"], response_model=RunState)
async def start(request: Request) -> dict[str, Any]:
    return await _runner(request).start()


@changes.post("/api/run/pause", tags=["run"], response_model=RunState)
async def pause(request: Request) -> dict[str, Any]:
    return await _runner(request).pause()


@changes.post("/api/run/reset", tags=["run"], response_model=RunState)
async def reset(request: Request) -> dict[str, Any]:
    return await _runner(request).reset()


@router.get("/api/stats", tags=["stats"], response_model=None,
            responses={200: {"model": Stats}, **BUSY})
async def stats(request: Request) -> dict[str, Any]:
    return await _runner(request).stats()


@router.get("/api/runs", tags=["runs"], response_model=None,
            responses={200: {"model": list[RunListing]}, **BUSY})
async def runs(request: Request) -> list[dict[str, Any]]:
    current = await _runner(request).current()
    stored = await anyio.to_thread.run_sync(request.app.state.store.runs)
    live = current["listings"]  # the current run and its compare twin, up to the moment
    out = []
    for record in stored:
        if record.run_id in live:
            out.append({**live[record.run_id], "current": True, "state": current["state"]})
        else:
            out.append({**record.listing(), "current": False})
    return out


@router.get("/api/export", tags=["exports"], response_class=StreamingResponse,
            responses={**export_responses(), **EXPORT_BUSY})
async def export_current(request: Request,
                         format: str = Query("jsonl", description=FORMAT_DOC,
                                             json_schema_extra={"enum": list(FORMATS)}),
                         ) -> Response:
    _check_format(format)
    runner = _runner(request)
    recipe = await runner.recipe()
    assert recipe is not None  # the current run always has one
    return _stream(request, format, recipe, runner.events_of(recipe.run_id))


@router.get("/api/runs/{run_id}/export", tags=["exports", "runs"],
            response_class=StreamingResponse,
            responses={**export_responses(), **NOT_FOUND, **GONE, **EXPORT_BUSY})
async def export_run(request: Request, run_id: str,
                     format: str = Query("jsonl", description=FORMAT_DOC,
                                         json_schema_extra={"enum": list(FORMATS)}),
                     ) -> Response:
    _check_format(format)
    runner = _runner(request)
    recipe = await runner.recipe(run_id)  # a live run (or twin) up to now
    if recipe is not None:
        return _stream(request, format, recipe, runner.events_of(run_id))
    record = await anyio.to_thread.run_sync(request.app.state.store.run, run_id)
    if record is None:
        raise HTTPException(404, f"unknown run {run_id!r}")
    events = (record.summary or {}).get("events")
    return _stream(request, format, _recipe_of(record), events)


@router.get("/api/scenarios", tags=["scenarios"], response_model=None,
            responses={200: {"model": list[ScenarioInfo]}})
async def scenarios(request: Request) -> list[dict[str, Any]]:
    listing: list[dict[str, Any]] = request.app.state.catalogue.listing()
    return listing


@changes.post("/api/scenarios", status_code=201, tags=["scenarios"], response_model=None,
              openapi_extra=TOML_BODY,
              responses={201: {"model": ScenarioInfo}, **PROBLEMS})
async def post_scenario(request: Request) -> Any:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return _problems([("body", "must be a UTF-8 TOML scenario file")])
    scenario = await anyio.to_thread.run_sync(request.app.state.catalogue.add, text)
    _announce_scenarios(request)
    return ScenarioInfo(name=scenario.name, description=scenario.description, builtin=False)


@changes.delete("/api/scenarios/{name}", tags=["scenarios"], response_model=Deleted,
                responses={**NO_SCENARIO, **CONFLICT, **PROBLEMS})
async def delete_scenario(request: Request, name: str) -> dict[str, str]:
    in_use = _runner(request).run.sim.config.scenario
    try:
        found = await anyio.to_thread.run_sync(request.app.state.catalogue.delete, name, in_use)
    except ScenarioInUse as exc:
        raise HTTPException(409, str(exc)) from None
    if not found:
        raise HTTPException(404, f"no posted scenario {name!r}")
    _announce_scenarios(request)
    return {"deleted": name}


def _announce_scenarios(request: Request) -> None:
    request.app.state.hub.publish(json.dumps(
        {"type": "scenarios", "scenarios": request.app.state.catalogue.listing()}))


@router.get("/api/ws-schema.json", tags=["observability"])
async def ws_schema() -> dict[str, Any]:
    """The JSON Schema of every message the server sends on WS /ws."""
    return ws_json_schema()


@router.get("/metrics", tags=["observability"], response_class=PlainTextResponse,
            responses=METRICS_RESPONSES)
async def metrics(request: Request) -> Response:
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _problems(problems: list[tuple[str, str]]) -> JSONResponse:
    return JSONResponse(Problems.of(problems).model_dump(), status_code=422)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise HTTPException(400, f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def _recipe_of(record: RunRecord) -> Recipe:
    try:
        if record.scenario_toml is not None:
            scenario = parse(record.scenario_toml, record.scenario)
        else:
            scenario = builtin_scenario(record.scenario)
        config = validate(Config(**record.config))
        afford.check(scenario, config.vcpus, record.scenario)  # stored before the limits
    except (ScenarioError, ConfigErrors, TypeError) as exc:
        reason = exc.messages[0] if isinstance(exc, ScenarioError) else str(exc)
        raise HTTPException(410, f"run {record.run_id} can no longer be replayed: "
                                 f"{reason}") from None
    return Recipe(record.run_id, config, scenario, record.timeline, record.end_ns)


def _stream(request: Request, fmt: str, recipe: Recipe,
            events: int | None) -> StreamingResponse:
    """The run's records regenerated and written as they are sent (gzip'ed when the
    client accepts it); `events`, the run's record count, sizes the Chrome trace."""
    exports: Exports = request.app.state.exports
    if not exports.take():
        raise HTTPException(503, f"{exports.limit} exports are being written already; "
                                 "try again when one has finished",
                            headers={"Retry-After": "5"})
    filename = f"tdx-contention-{recipe.run_id}.{EXTENSIONS[fmt]}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"',
               "Vary": "Accept-Encoding"}
    gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(iterate_in_threadpool(exports.held(_pieces(fmt, recipe, events, gzip))),
                             media_type=MEDIA_TYPES[fmt], headers=headers)


def _pieces(fmt: str, recipe: Recipe, events: int | None = None,
            gzip: bool = False) -> Iterator[bytes]:
    """The run's records regenerated and written, in pieces big enough to be cheap to send."""
    records = replay(recipe.config, recipe.timeline, recipe.end_ns, recipe.scenario,
                     finish=False)
    return encode(fmt, records, recipe.config.to_dict(), events, gzip)


