"""The web application: `create_app(settings)` wires store, catalogue, hub, runner and routes."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app import api, compare, ws
from app.exports import Exports
from app.hub import Hub
from app.metrics import Metrics
from app.openapi import TAGS
from app.runner import Runner
from app.scenarios import Catalogue
from app.schema import Problems
from app.security import Guard, HostPolicy
from app.settings import Settings
from app.store import Store, StoreError
from app.supervise import RunnerUnavailable
from app.sweep import routes as sweep_routes
from app.sweep.manager import open_manager
from engine.errors import ConfigErrors, ScenarioError

log = logging.getLogger(__name__)
MAX_PROBLEMS = 50  # a 422 names at most this many problems of a scenario file


def static_dir() -> Path:
    """The dashboard's files: the installed app.static package, or static/ in a checkout."""
    try:
        return Path(str(resources.files("app.static")))
    except ModuleNotFoundError:  # running from a source tree whose app/ shadows the install
        return Path(__file__).resolve().parent.parent / "static"


def plotly_bundle() -> Path:
    """plotly.js as the installed plotly package ships it (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("the plotly package is not installed")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A fresh application; nothing runs until its lifespan starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await anyio.to_thread.run_sync(Store, settings.data_dir)
        catalogue = Catalogue(store)
        hub = Hub(asyncio.get_running_loop(), settings.queue_size)
        metrics = Metrics()
        runner = Runner(settings, store, catalogue, hub, metrics)
        app.state.store, app.state.catalogue, app.state.hub = store, catalogue, hub
        app.state.metrics, app.state.runner = metrics, runner
        app.state.exports = Exports(settings.max_exports)
        runner.start_thread()
        app.state.sweeps = await anyio.to_thread.run_sync(
            open_manager, settings.data_dir, settings.dask_scheduler)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(app.state.sweeps.stop)
            await anyio.to_thread.run_sync(runner.stop)
            store.close()

    app = FastAPI(title="tdx-contention", lifespan=lifespan, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json", openapi_tags=TAGS,
                  description="Live TDX module lock contention: config, runs, exports. "
                              "The WebSocket /ws messages: GET /api/ws-schema.json.")
    app.state.settings = settings
    app.add_middleware(Guard, hosts=HostPolicy(settings.host, settings.allow_hosts),
                       token=settings.token)
    app.include_router(api.router)
    app.include_router(api.changes)
    app.include_router(compare.router)
    app.include_router(compare.changes)
    app.include_router(ws.router)
    app.include_router(sweep_routes.router)
    _add_error_handlers(app)
    _add_page(app, settings.static_dir or static_dir())
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConfigErrors)
    async def config_errors(request: Request, exc: ConfigErrors) -> JSONResponse:
        problems = Problems.of([(e.field, e.message) for e in exc.errors])
        return JSONResponse(problems.model_dump(), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def request_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own checks answer in the same shape as the engine's (Problems)."""
        problems = Problems.of([(str(e["loc"][-1]) if e["loc"] else "request", e["msg"])
                                for e in exc.errors()])
        return JSONResponse(problems.model_dump(), status_code=422)

    @app.exception_handler(RunnerUnavailable)
    async def runner_unavailable(request: Request, exc: RunnerUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"the run history cannot be written: {exc}; the run "
                                       "is paused"}, status_code=503)

    @app.exception_handler(ScenarioError)
    async def scenario_error(request: Request, exc: ScenarioError) -> JSONResponse:
        shown = [_scenario_problem(m) for m in exc.messages[:MAX_PROBLEMS]]
        if len(exc.messages) > MAX_PROBLEMS:  # a file of 20,000 bad keys: not a 3 MB answer
            shown.append(("scenario", f"and {len(exc.messages) - MAX_PROBLEMS} more problems"))
        problems = Problems.of(shown)
        return JSONResponse(problems.model_dump(), status_code=422)


def _scenario_problem(message: str) -> tuple[str, str]:
    """'where: key: what' as (key, what); the engine's messages name the key second."""
    parts = message.split(": ", 2)
    if len(parts) == 3:
        return parts[1], parts[2]
    return "scenario", message


def _add_page(app: FastAPI, directory: Path) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = directory / "index.html"
        if not page.is_file():
            return JSONResponse({"detail": "the dashboard page is not installed"}, 404)
        return FileResponse(page, media_type="text/html")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> Response:
        return FileResponse(plotly_bundle(), media_type="text/javascript")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        icon = directory / "favicon.ico"
        return FileResponse(icon) if icon.is_file() else Response(status_code=204)

    app.mount("/static", StaticFiles(directory=directory, check_dir=False), name="static")
