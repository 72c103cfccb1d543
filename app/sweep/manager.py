"""The server's sweeps: kept in the data dir, run one at a time in a low-priority process."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.sweep.answer import Answers, curves, scenario_values
from app.sweep.cli import IN_USE
from app.sweep.driver import summary_rows
from app.sweep.spec import Sweep, SweepError, builtin_names, builtin_text, parse_sweep
from app.sweep.store import PROGRESS, SWEEP_JSON, PointsFile, StoreError, read_json, write_json

log = logging.getLogger(__name__)
META, SOURCE, LOG = "meta.json", "sweep.toml", "log.txt"
STATES = ("queued", "running", "done", "failed", "cancelled")
# What the server accepts: a sweep must fit in a day of one core (pure-Python engine, a
# contended TD: about 2e5 simulated vCPU-microseconds a second, docs/sweeps.md).
VCPU_US_PER_S = 200_000
MAX_CPU_S = 24 * 3600
CANCEL_GRACE_S = 20.0


def jsonable(value: Any) -> Any:
    """NaN (a rate of no calls) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def estimate_cpu_s(sweep: Sweep) -> float:
    """CPU seconds the sweep would take (arithmetic: the grid is not built)."""
    sizes: list[int] = sweep.axes.get("vcpus", [sweep.fixed.get("vcpus", 8)])
    total: float = sum(sizes) * sweep.count() / len(sizes)  # every TD size meets every other point
    return total * sweep.seeds * sweep.duration_us / VCPU_US_PER_S


def check_affordable(sweep: Sweep) -> None:
    cost = estimate_cpu_s(sweep)
    if cost > MAX_CPU_S:
        raise SweepError([f"sweep: axes: {sweep.runs()} runs of {sweep.duration_us} us would "
                          f"take about {cost / 3600:.0f} h of CPU; the server accepts sweeps "
                          f"of up to {MAX_CPU_S // 3600} h (fewer points, seeds or "
                          "duration_us; or run it with `tdx-contention sweep`)"])


class SweepManager:
    """Sweeps under `root/<id>/`: the uploaded file, meta.json, and the sweep's own files.

    One sweep runs at a time (the machine's cores go to its worker pool); the others wait
    in order. A sweep that was queued or running when the server stopped is queued again
    at start and resumes: its points.csv keeps every row it had finished.
    """

    def __init__(self, root: Path, workers: int | None = None,
                 scheduler: str | None = None) -> None:
        self.root = root
        self.workers = workers
        self.scheduler = scheduler
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._running: str | None = None
        self._cancelled: set[str] = set()
        self._sweeps: dict[str, Sweep] = {}
        self._thread = threading.Thread(target=self._loop, name="sweeps", daemon=True)
        for meta in self._metas():
            if meta["state"] in ("queued", "running"):
                self._set(meta["sweep_id"], state="queued")

    # -- the public side: what the routes call ---------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the running sweep (it resumes at the next start) and the thread."""
        self._stopping.set()
        self._wake.set()
        self._terminate()
        self._thread.join(timeout=CANCEL_GRACE_S + 5)

    def submit(self, text: str) -> str:
        """Validate and queue a sweep file; SweepError names what is wrong."""
        sweep = parse_sweep(text, "sweep")
        check_affordable(sweep)
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        directory = self.root / sweep_id
        directory.mkdir()
        (directory / SOURCE).write_text(text, encoding="utf-8")
        write_json(directory / META, {"sweep_id": sweep_id, "name": sweep.name,
                                      "description": sweep.description, "created": time.time(),
                                      "state": "queued", "error": None, "total": sweep.runs()})
        self._wake.set()
        return sweep_id

    def cancel(self, sweep_id: str) -> dict[str, Any] | None:
        meta = self.meta(sweep_id)
        if meta is None:
            return None
        with self._lock:
            if meta["state"] == "queued":
                self._set(sweep_id, state="cancelled")
            elif meta["state"] == "running":
                self._cancelled.add(sweep_id)
        if sweep_id == self._running:
            self._terminate()
        return self.status(sweep_id)

    def sweeps(self) -> list[dict[str, Any]]:
        return [self._brief(m) for m in sorted(self._metas(), key=lambda m: -m["created"])]

    def meta(self, sweep_id: str) -> dict[str, Any] | None:
        path = self.root / sweep_id / META
        if "/" in sweep_id or sweep_id.startswith(".") or not path.is_file():
            return None
        meta: dict[str, Any] = read_json(path)
        return meta

    def status(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep's state, progress, summary rows and (when there are any) answers."""
        meta = self.meta(sweep_id)
        if meta is None:
            return None
        out = self._brief(meta)
        sweep = self._sweep(sweep_id)
        try:
            rows = PointsFile(self.path(sweep_id, "points.csv"), sweep.axes).rows
        except (StoreError, OSError, ValueError):
            rows = {}
        summary = summary_rows(sweep, rows)
        values = scenario_values({"sweep": sweep.to_dict()})
        out.update(axes=sweep.axes, seeds=sweep.seeds, duration_us=sweep.duration_us,
                   scenario=sweep.scenario_name, summary=summary, answers=[],
                   failures=self._failures(sweep_id), curves=curves(sweep.axes, summary, values))
        if "retry_max" in sweep.axes and summary:
            answers = Answers(sweep.axes, summary, values)
            out.update(answers=answers.main(), answer_axes=answers.design,
                       moves=answers.moves())
        clean: dict[str, Any] = jsonable(out)
        return clean

    def path(self, sweep_id: str, name: str) -> Path:
        return self.root / sweep_id / name

    @staticmethod
    def builtins() -> list[dict[str, Any]]:
        return [{"name": n, "text": builtin_text(n)} for n in builtin_names()]

    # -- inside ------------------------------------------------------------------------

    def _sweep(self, sweep_id: str) -> Sweep:
        if sweep_id not in self._sweeps:
            text = self.path(sweep_id, SOURCE).read_text(encoding="utf-8")
            self._sweeps[sweep_id] = parse_sweep(text, "sweep")
        return self._sweeps[sweep_id]

    def _failures(self, sweep_id: str) -> list[dict[str, Any]]:
        with contextlib.suppress(OSError, ValueError):
            failures: list[dict[str, Any]] = read_json(self.path(sweep_id, SWEEP_JSON)).get(
                "failures", [])
            return failures
        return []

    def _brief(self, meta: dict[str, Any]) -> dict[str, Any]:
        progress: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            progress = read_json(self.path(meta["sweep_id"], PROGRESS))
        done = progress.get("done", 0) if meta["state"] != "queued" or progress else 0
        return {"sweep_id": meta["sweep_id"], "name": meta["name"], "state": meta["state"],
                "created": meta["created"], "error": meta.get("error"),
                "done": done, "total": progress.get("total", meta["total"]),
                "failed": progress.get("failed", 0), "eta_s": progress.get("eta_s")}

    def _metas(self) -> list[dict[str, Any]]:
        out = []
        for path in self.root.glob(f"*/{META}"):
            with contextlib.suppress(OSError, ValueError):
                out.append(read_json(path))
        return out

    def _set(self, sweep_id: str, **changes: Any) -> None:
        path = self.root / sweep_id / META
        write_json(path, {**read_json(path), **changes})

    def _next(self) -> str | None:
        queued = [m for m in self._metas() if m["state"] == "queued"]
        return min(queued, key=lambda m: m["created"])["sweep_id"] if queued else None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            sweep_id = self._next()
            if sweep_id is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                self._run(sweep_id)
            except Exception:  # one broken sweep must not stop the queue
                log.exception("sweep %s", sweep_id)
                self._set(sweep_id, state="failed", error="internal error; see the server log")

    def _command(self, sweep_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "app.cli", "sweep", str(self.path(sweep_id, SOURCE)),
               "--out", str(self.root / sweep_id), "--no-png", "--stop-with-parent"]
        if self.scheduler:
            return [*cmd, "--scheduler", self.scheduler]
        return [*cmd, "--workers", str(self.workers)] if self.workers else cmd

    def _run(self, sweep_id: str) -> None:
        with self._lock:
            self._set(sweep_id, state="running", error=None)
            self._running = sweep_id
            with open(self.path(sweep_id, LOG), "ab") as out:
                self._proc = subprocess.Popen(self._command(sweep_id), stdout=out, stderr=out,
                                              stdin=subprocess.DEVNULL, process_group=0)
        with contextlib.suppress(OSError):  # the driver too yields to the live run
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, 19)
        rc = self._proc.wait()
        with self._lock:
            self._proc, self._running = None, None
            if self._stopping.is_set() and sweep_id not in self._cancelled:
                self._set(sweep_id, state="queued")  # the server stops: resume next time
            elif sweep_id in self._cancelled:
                self._set(sweep_id, state="cancelled")
            elif rc == 0:
                self._set(sweep_id, state="done")
            elif rc == IN_USE:  # a process of a server that died still finishes its points
                self._set(sweep_id, state="queued")
            else:
                self._set(sweep_id, state="failed", error=self._error(sweep_id, rc))
        if rc == IN_USE:
            self._stopping.wait(1.0)  # let it finish before trying again

    def _error(self, sweep_id: str, rc: int) -> str:
        if self._failures(sweep_id):
            return "some points failed (see failures)"
        try:
            tail = self.path(sweep_id, LOG).read_text(encoding="utf-8").strip().splitlines()
        except OSError:
            tail = []
        return tail[-1] if tail else f"the sweep process exited with status {rc}"

    def _terminate(self) -> None:
        """SIGTERM to the sweep's driver: it stops submitting, lets the running points
        finish, and writes its files; SIGKILL to its process group after a grace time."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def open_manager(data_dir: Path, scheduler: str | None) -> SweepManager:
    """The server's manager over `data_dir/sweeps`, its thread started."""
    manager = SweepManager(data_dir / "sweeps", scheduler=scheduler)
    manager.start()
    return manager
