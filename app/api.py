"""The REST routes: config, run control, stats, exports, run history, scenarios, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import iterate_in_threadpool

from app.runner import Recipe, Runner
from app.scenarios import ScenarioInUse
from app.schema import Problems, ScenarioInfo
from app.security import require_token
from app.store import RunRecord
from engine import afford
from engine.config import Config, validate
from engine.errors import ConfigErrors, ScenarioError
from engine.export import EXTENSIONS, FORMATS, MEDIA_TYPES, chunks
from engine.scenario import builtin_scenario, parse
from engine.sim import replay

router = APIRouter()
changes = APIRouter(dependencies=[Depends(require_token)])
EXPORT_PIECE_CHARS = 256 * 1024  # join the writers' small strings into pieces this big


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    down = _runner(request).down()
    if down is not None:
        return JSONResponse({"ok": False, "detail": f"the runner is down: {down}"}, 503)
    return JSONResponse({"ok": True})


@router.get("/api/config")
async def get_config(request: Request) -> dict[str, Any]:
    return _runner(request).run.sim.config.to_dict()


@changes.patch("/api/config")
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


@changes.post("/api/run/start")
async def start(request: Request) -> dict[str, Any]:
    return await _runner(request).start()


@changes.post("/api/run/pause")
async def pause(request: Request) -> dict[str, Any]:
    return await _runner(request).pause()


@changes.post("/api/run/reset")
async def reset(request: Request) -> dict[str, Any]:
    return await _runner(request).reset()


@router.get("/api/stats")
async def stats(request: Request) -> dict[str, Any]:
    return await _runner(request).stats()


@router.get("/api/runs")
async def runs(request: Request) -> list[dict[str, Any]]:
    current = await _runner(request).current()
    stored = await anyio.to_thread.run_sync(request.app.state.store.runs)
    out = []
    for record in stored:
        if record.run_id == current["run_id"]:
            out.append({**current["listing"], "current": True, "state": current["state"]})
        else:
            out.append({**record.listing(), "current": False})
    return out


@router.get("/api/export")
async def export_current(request: Request, format: str = "jsonl") -> Response:
    _check_format(format)
    return _stream(format, await _runner(request).recipe())


@router.get("/api/runs/{run_id}/export")
async def export_run(request: Request, run_id: str, format: str = "jsonl") -> Response:
    _check_format(format)
    runner = _runner(request)
    if run_id == runner.run.run_id:
        recipe = await runner.recipe()
        if recipe.run_id == run_id:
            return _stream(format, recipe)
    record = await anyio.to_thread.run_sync(request.app.state.store.run, run_id)
    if record is None:
        raise HTTPException(404, f"unknown run {run_id!r}")
    return _stream(format, _recipe_of(record))


@router.get("/api/scenarios")
async def scenarios(request: Request) -> list[dict[str, Any]]:
    listing: list[dict[str, Any]] = request.app.state.catalogue.listing()
    return listing


@changes.post("/api/scenarios", status_code=201)
async def post_scenario(request: Request) -> Any:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return _problems([("body", "must be a UTF-8 TOML scenario file")])
    scenario = await anyio.to_thread.run_sync(request.app.state.catalogue.add, text)
    _announce_scenarios(request)
    return ScenarioInfo(name=scenario.name, description=scenario.description, builtin=False)


@changes.delete("/api/scenarios/{name}")
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


@router.get("/metrics")
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


def _stream(fmt: str, recipe: Recipe) -> StreamingResponse:
    filename = f"tdx-contention-{recipe.run_id}.{EXTENSIONS[fmt]}"
    return StreamingResponse(
        iterate_in_threadpool(_pieces(fmt, recipe)), media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _pieces(fmt: str, recipe: Recipe) -> Iterator[bytes]:
    """The run's records regenerated and written, in pieces big enough to be cheap to send."""
    records = replay(recipe.config, recipe.timeline, recipe.end_ns, recipe.scenario,
                     finish=False)
    buffer: list[str] = []
    size = 0
    for piece in chunks(fmt, records):
        buffer.append(piece)
        size += len(piece)
        if size >= EXPORT_PIECE_CHARS:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()
