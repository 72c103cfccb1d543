"""Run history: each run's recipe and summary, and posted scenarios, in SQLite."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
DB_NAME = "runs.sqlite3"
LOCK_NAME = "server.lock"  # held by the one server using the data dir (flock)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    scenario TEXT NOT NULL,
    scenario_toml TEXT,
    config TEXT NOT NULL,
    timeline TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    summary TEXT NOT NULL,
    twin_of TEXT
);
CREATE TABLE IF NOT EXISTS scenarios (
    name TEXT PRIMARY KEY,
    toml TEXT NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass
class RunRecord:
    """A run's recipe (initial config, scenario, control timeline, end) and its summary.

    `scenario_toml` is the text of a posted scenario as it was when the run began (None
    for a built-in one), so the run replays even after the scenario is replaced.
    """

    run_id: str
    created: float
    scenario: str
    config: dict[str, Any]
    timeline: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    end_ns: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    scenario_toml: str | None = None
    twin_of: str | None = None  # a compare twin: the run it is the twin of

    def listing(self) -> dict[str, Any]:
        """The run as GET /api/runs shows it."""
        return {"run_id": self.run_id, "created": self.created, "scenario": self.scenario,
                "config": self.config, "end_ns": self.end_ns, "controls": len(self.timeline),
                "changed_live": bool(self.timeline), "twin_of": self.twin_of,
                "timeline": [{"t_ns": t, "changes": c} for t, c in self.timeline],
                "summary": self.summary}


class StoreError(Exception):
    """The run history cannot be opened, read or written; the message names the file."""


class Store:
    """One SQLite file in the data dir; safe to call from the runner thread and the loop.

    One server per data dir: the store holds an exclusive lock on `server.lock` while open.
    Every SQLite or OS error comes out as StoreError naming the file.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        self._lock = threading.Lock()
        self._lockfile = _take_lock(data_dir)
        try:
            self._db = self._open()
        except BaseException:
            self._lockfile.close()
            raise

    def _open(self) -> sqlite3.Connection:
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: the run history is an empty file (0 bytes), not a "
                             "database; move it away (or delete it) to start a new history")
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            db.executescript(SCHEMA)
            _add_twin_of(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot use the run history: {exc} (move the file "
                             "away to start a new history)") from None
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lockfile.close()  # releases the flock

    @contextmanager
    def _io(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"{self.path}: cannot {what}: {exc}") from None

    def save_run(self, run: RunRecord) -> None:
        row = (run.run_id, run.created, run.scenario, run.scenario_toml,
               json.dumps(run.config), json.dumps(run.timeline), run.end_ns,
               json.dumps(run.summary), run.twin_of)
        with self._io(f"store run {run.run_id}") as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE "
                "SET timeline=excluded.timeline, end_ns=excluded.end_ns, "
                "summary=excluded.summary", row)

    def runs(self) -> list[RunRecord]:
        """Every run, newest first; a row that cannot be read is skipped with a warning."""
        with self._io("read the run history") as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC, rowid DESC").fetchall()
        return [record for row in rows if (record := self._readable(row)) is not None]

    def run(self, run_id: str) -> RunRecord | None:
        with self._io(f"read run {run_id}") as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else self._readable(row)

    def _readable(self, row: tuple[Any, ...]) -> RunRecord | None:
        try:
            return _run(row)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: skipping run %r: its row cannot be read (%s: %s)", self.path,
                        row[0] if row else None, type(exc).__name__, exc)
            return None

    def save_scenario(self, name: str, toml: str, created: float) -> None:
        with self._io(f"store scenario {name}") as db:
            db.execute(
                "INSERT INTO scenarios VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                "SET toml=excluded.toml, created=excluded.created", (name, toml, created))

    def delete_scenario(self, name: str) -> None:
        with self._io(f"delete scenario {name}") as db:
            db.execute("DELETE FROM scenarios WHERE name = ?", (name,))

    def scenarios(self) -> list[tuple[str, str]]:
        """Posted scenarios as (name, TOML text), oldest first."""
        with self._io("read the posted scenarios") as db:
            return list(db.execute(
                "SELECT name, toml FROM scenarios ORDER BY created, rowid").fetchall())


def _add_twin_of(db: sqlite3.Connection) -> None:
    """Data dirs from before compare twins have no twin_of column: add it."""
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    if "twin_of" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN twin_of TEXT")


def _take_lock(data_dir: Path) -> IO[str]:
    """The data dir's lock file, locked; StoreError if another server holds it."""
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"{data_dir}: the data dir is a file, not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot use the data dir: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(f"{data_dir}: another server uses this data dir (pid {holder}); "
                         "stop it, or give this one its own --data-dir") from None
    try:  # the pid is a courtesy to whoever meets the lock: a full disk must not stop us
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
    except OSError:
        pass
    return handle


def _run(row: tuple[Any, ...]) -> RunRecord:
    run_id, created, scenario, scenario_toml, config, timeline, end_ns, summary, twin_of = row
    if not isinstance(run_id, str) or not isinstance(end_ns, int):
        raise ValueError("run_id or end_ns has the wrong type")
    loaded = json.loads(config)
    if not isinstance(loaded, dict):
        raise ValueError("config is not a JSON object")
    return RunRecord(run_id=run_id, created=float(created), scenario=str(scenario),
                     config=loaded,
                     timeline=[(int(t), dict(c)) for t, c in json.loads(timeline)],
                     end_ns=end_ns, summary=json.loads(summary), scenario_toml=scenario_toml,
                     twin_of=twin_of)
