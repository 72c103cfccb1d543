"""The sweep routes (CONTRACT.md "Sweeps"): thin calls into the SweepManager."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from app.schema import Problems
from app.security import require_token
from app.sweep.manager import SweepManager
from app.sweep.spec import SweepError

router = APIRouter()
changes = APIRouter(dependencies=[Depends(require_token)])
MAX_BODY = 1024 * 1024
FILES = {"summary.csv": "text/csv", "points.csv": "text/csv", "report.html": "text/html"}


def _manager(request: Request) -> SweepManager:
    manager: SweepManager = request.app.state.sweeps
    return manager


def _missing(sweep_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no sweep {sweep_id!r}"}, status_code=404)


def _problem(message: str) -> tuple[str, str]:
    """'where: key: what' as (key, what), as the scenario errors are mapped."""
    parts = message.split(": ", 2)
    return (parts[1], parts[2]) if len(parts) == 3 else ("body", message)


@changes.post("/api/sweeps", status_code=202)
async def submit(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse(Problems.of([("body", "a sweep file of at most 1 MiB")]).model_dump(),
                            status_code=413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return JSONResponse(Problems.of([("body", "must be a UTF-8 sweep file (TOML)")]
                                        ).model_dump(), status_code=422)
    try:
        sweep_id = await anyio.to_thread.run_sync(_manager(request).submit, text)
    except SweepError as exc:
        problems = Problems.of([_problem(m) for m in exc.messages])
        return JSONResponse(problems.model_dump(), status_code=422)
    return {"sweep_id": sweep_id}


@router.get("/api/sweeps")
async def list_sweeps(request: Request) -> list[dict[str, Any]]:
    return await anyio.to_thread.run_sync(_manager(request).sweeps)


@router.get("/api/sweep-builtins")
async def builtins(request: Request) -> list[dict[str, Any]]:
    """The built-in sweep files, to start as they are or edited."""
    return await anyio.to_thread.run_sync(_manager(request).builtins)


@router.get("/api/sweeps/{sweep_id}")
async def status(request: Request, sweep_id: str) -> Any:
    found = await anyio.to_thread.run_sync(_manager(request).status, sweep_id)
    return found if found is not None else _missing(sweep_id)


@router.get("/api/sweeps/{sweep_id}/{name}")
async def sweep_file(request: Request, sweep_id: str, name: str) -> Response:
    manager = _manager(request)
    if name not in FILES or manager.meta(sweep_id) is None:
        return _missing(f"{sweep_id}/{name}")
    path = manager.path(sweep_id, name)
    if not path.is_file():
        return JSONResponse({"detail": f"sweep {sweep_id!r} has no {name} yet"}, status_code=404)
    return FileResponse(path, media_type=FILES[name])


@changes.delete("/api/sweeps/{sweep_id}")
async def cancel(request: Request, sweep_id: str) -> Any:
    found = await anyio.to_thread.run_sync(_manager(request).cancel, sweep_id)
    return found if found is not None else _missing(sweep_id)


router.include_router(changes)  # after every route of `changes` is defined: it copies them
