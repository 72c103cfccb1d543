"""Run history: each run's recipe and summary, and posted scenarios, in SQLite."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class Store:
    """One SQLite file in the data dir; safe to call from the runner thread and the loop."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "runs.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        _add_twin_of(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save_run(self, run: RunRecord) -> None:
        row = (run.run_id, run.created, run.scenario, run.scenario_toml,
               json.dumps(run.config), json.dumps(run.timeline), run.end_ns,
               json.dumps(run.summary), run.twin_of)
        with self._lock:
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE "
                "SET timeline=excluded.timeline, end_ns=excluded.end_ns, "
                "summary=excluded.summary", row)

    def runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY created DESC, rowid DESC").fetchall()
        return [_run(row) for row in rows]

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def save_scenario(self, name: str, toml: str, created: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO scenarios VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                "SET toml=excluded.toml, created=excluded.created", (name, toml, created))

    def scenarios(self) -> list[tuple[str, str]]:
        """Posted scenarios as (name, TOML text), oldest first."""
        with self._lock:
            return list(self._db.execute(
                "SELECT name, toml FROM scenarios ORDER BY created, rowid").fetchall())


def _add_twin_of(db: sqlite3.Connection) -> None:
    """Data dirs from before compare twins have no twin_of column: add it."""
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    if "twin_of" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN twin_of TEXT")


def _run(row: tuple[Any, ...]) -> RunRecord:
    run_id, created, scenario, scenario_toml, config, timeline, end_ns, summary, twin_of = row
    return RunRecord(run_id=run_id, created=created, scenario=scenario,
                     config=json.loads(config),
                     timeline=[(int(t), dict(c)) for t, c in json.loads(timeline)],
                     end_ns=end_ns, summary=json.loads(summary), scenario_toml=scenario_toml,
                     twin_of=twin_of)
