"""Running a sweep into its directory: the missing rows, progress, then the files."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import engine
from app.sweep import execute
from app.sweep.point import Task
from app.sweep.spec import Sweep
from app.sweep.stats import EXTRA_COLUMNS, SUMMARY_COLUMNS, answers, summarize
from app.sweep.store import (
    POINTS,
    PROGRESS,
    SUMMARY,
    SWEEP_JSON,
    DirLock,
    PointsFile,
    StoreError,
    read_json,
    row_key,
    write_csv,
    write_json,
)


@dataclass
class Progress:
    """Rows done of the total, failures, and a time-left estimate weighted by cost."""

    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    cost_total: int = 1
    cost_done: int = 0
    cost_skipped: int = 0  # rows already in points.csv: no time was spent on them

    @property
    def eta_s(self) -> float | None:
        spent = self.cost_done - self.cost_skipped
        if spent <= 0:
            return None
        rate = spent / max(time.monotonic() - self.started, 1e-6)
        return (self.cost_total - self.cost_done) / rate

    def to_dict(self) -> dict[str, Any]:
        eta = self.eta_s
        return {"done": self.done, "total": self.total, "failed": self.failed,
                "eta_s": None if eta is None else round(eta, 1),
                "elapsed_s": round(time.monotonic() - self.started, 1)}


def tasks_of(sweep: Sweep) -> list[Task]:
    """Every (point, seed) of the sweep, most costly first (the pool's tail stays short)."""
    tasks = [Task(point=p, seed=s, fixed=sweep.fixed, duration_us=sweep.duration_us,
                  scenario_text=sweep.scenario_text, builtin=sweep.builtin)
             for p in sweep.points() for s in range(1, sweep.seeds + 1)]
    return sorted(tasks, key=lambda t: -t.cost)


def versions(scheduler: str | None) -> dict[str, Any]:
    out = {"tdx_contention": _version("tdx-contention"), "engine": engine.__version__,
           "python": platform.python_version(), "plotly": _version("plotly")}
    if scheduler:
        out["distributed"] = _version("distributed")
    return out


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_dir(sweep: Sweep, out: Path) -> None:
    """Refuse a directory that holds rows of another sweep (another scenario, duration...)."""
    path = out / SWEEP_JSON
    if not path.exists():
        return
    try:
        before = read_json(path).get("recipe")
    except (OSError, ValueError, AttributeError):
        return
    mine = sweep.recipe()
    if before is not None and before != mine:
        differ = [k for k in mine if before.get(k) != mine[k]]
        raise StoreError(f"{out} holds rows of another sweep ({', '.join(differ)} differ): "
                         "choose another --out directory")


def run_sweep(sweep: Sweep, out: Path, workers: int | None = None,
              scheduler: str | None = None,
              on_progress: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None, png: bool = True,
              nice: int = 19) -> dict[str, Any]:
    """Compute the rows `out/points.csv` lacks, then write summary, sweep.json and report.

    Raises InUse when another process is running a sweep into `out`, RuntimeError when
    the Dask scheduler does not answer (then nothing is written)."""
    check_dir(sweep, out)
    client = execute.connect(scheduler) if scheduler else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        with DirLock(out):
            return _run(sweep, out, workers, client, scheduler, on_progress,
                        stop or threading.Event(), png, nice)
    finally:
        if client is not None:
            client.close()


def _run(sweep: Sweep, out: Path, workers: int | None, client: Any, scheduler: str | None,
         on_progress: Callable[[Progress], None] | None, stop: threading.Event, png: bool,
         nice: int) -> dict[str, Any]:
    points = PointsFile(out / POINTS, sweep.axes, repair=True)
    tasks = tasks_of(sweep)
    todo = [t for t in tasks if row_key({**t.point, "seed": t.seed}, sweep.axis_names)
            not in points.rows]
    progress = Progress(total=len(tasks), done=len(tasks) - len(todo),
                        cost_total=sum(t.cost for t in tasks))
    progress.cost_done = progress.cost_skipped = progress.cost_total - sum(t.cost for t in todo)
    head = {"recipe": sweep.recipe(), "sweep": sweep.to_dict(), "versions": versions(scheduler)}
    write_json(out / SWEEP_JSON, {**head, "state": "running"})
    failures: list[dict[str, Any]] = []
    last = 0.0
    try:
        outcomes = (execute.dask(todo, client, stop) if client is not None
                    else execute.local(todo, workers or execute.default_workers(), stop, nice))
        for task, row, error in outcomes:
            progress.cost_done += task.cost
            if row is not None:
                points.append(row)
                progress.done += 1
            else:
                progress.failed += 1
                failures.append({"point": task.point, "seed": task.seed, "fixed": task.fixed,
                                 "error": error})
            now = time.monotonic()
            if now - last >= 0.5:
                last = now
                _progress(out, progress, on_progress)
    finally:
        points.close()
    _progress(out, progress, on_progress)
    state = "cancelled" if stop.is_set() else ("failed" if failures else "done")
    return finish(sweep, out, points.rows, head, failures, state, png)


def _progress(out: Path, progress: Progress,
              on_progress: Callable[[Progress], None] | None) -> None:
    write_json(out / PROGRESS, progress.to_dict())
    if on_progress is not None:
        on_progress(progress)


def summary_rows(sweep: Sweep, rows: dict[tuple[str, ...], dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.csv's rows in grid order: one per point that has at least one row."""
    out = []
    for point in sweep.points():
        mine = [r for s in range(1, sweep.seeds + 1)
                if (r := rows.get(row_key({**point, "seed": s}, sweep.axis_names))) is not None]
        if mine:
            out.append(summarize(point, mine))
    return out


def finish(sweep: Sweep, out: Path, rows: dict[tuple[str, ...], dict[str, Any]],
           head: dict[str, Any], failures: list[dict[str, Any]], state: str,
           png: bool = True) -> dict[str, Any]:
    summary = summary_rows(sweep, rows)
    write_csv(out / SUMMARY, [*sweep.axis_names, *SUMMARY_COLUMNS, *EXTRA_COLUMNS], summary)
    result = {**head, "state": state, "failures": failures, "summary": summary,
              "answers": answers(summary, sweep.axis_names) if "retry_max" in sweep.axes else [],
              "rows": sorted(rows.values(), key=lambda r: row_key(r, sweep.axis_names))}
    write_json(out / SWEEP_JSON, result)
    from app.sweep.report import write_report

    write_report(out, result, png)
    return result
