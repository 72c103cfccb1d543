"""A sweep's directory: append-only points.csv (resumable), summary.csv and sweep.json."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from pathlib import Path
from typing import IO, Any

from app.sweep.point import COUNTS

POINTS, SUMMARY, SWEEP_JSON, REPORT, PROGRESS = (
    "points.csv", "summary.csv", "sweep.json", "report.html", "progress.json")
HIST = "attempts_per_call"  # an extra last column: the histogram p99 is computed from


class StoreError(Exception):
    """The directory holds something this sweep cannot continue."""


class InUse(StoreError):
    """Another sweep process is writing into the directory right now."""


class DirLock:
    """An exclusive lock on a sweep directory for as long as a sweep writes into it: two
    writers appending to one points.csv would each compute the same missing rows."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> DirLock:
        self._file = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise InUse(f"{self.path.parent} is in use by another sweep ({holder})") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock; the file may stay


def cell(value: Any) -> str:
    """Full precision: ints as ints, floats as repr, booleans as TOML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def point_columns(axes: list[str]) -> list[str]:
    return [*axes, "seed", *COUNTS, HIST]


def row_key(row: dict[str, Any], axes: list[str]) -> tuple[str, ...]:
    """A row's identity, compared as written: (axis values..., seed)."""
    return tuple(cell(row[a]) for a in axes) + (cell(row["seed"]),)


def parse_cell(text: str) -> Any:
    """A points.csv cell back as a number, boolean, histogram or text."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("{"):
        return json.loads(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class PointsFile:
    """points.csv: a header, then one row per (point, seed), flushed as each one finishes.

    A SIGKILL can cut the last line short; the writer (`repair=True`) drops that fragment
    when it opens the file, so a rerun recomputes it and no row is half there or there
    twice. A reader (the server polling a running sweep) ignores a last line without its
    newline and leaves the file alone: the writer may be in the middle of it.
    """

    def __init__(self, path: Path, axes: dict[str, list[Any]], repair: bool = False) -> None:
        self.path = path
        self.axes = list(axes)
        self.columns = point_columns(self.axes)
        # An axis cell reads back as the sweep's own value ("1.5" stays a version string).
        self._values = {a: {cell(v): v for v in values} for a, values in axes.items()}
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self._out: IO[str] | None = None
        if path.exists():
            self._load(repair)

    def _load(self, repair: bool) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a row cut short (by a kill, or being written)
            data = data[: data.rfind(b"\n") + 1]
            if repair:
                with open(self.path, "r+b") as f:
                    f.truncate(len(data))
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        header = next(reader, None)
        if header is None:
            return
        if header != self.columns:
            raise StoreError(f"{self.path} has columns {', '.join(header)}; this sweep writes "
                             f"{', '.join(self.columns)}: choose another --out directory")
        for cells in reader:
            if len(cells) != len(header):
                continue
            row = {c: self._values.get(c, {}).get(v, v) if c in self._values else parse_cell(v)
                   for c, v in zip(header, cells, strict=True)}
            self.rows[row_key(row, self.axes)] = row

    def append(self, row: dict[str, Any]) -> None:
        if self._out is None:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._out = open(self.path, "a", encoding="utf-8", newline="")
            if fresh:
                self._write(self.columns)
        self._write([cell(row[c]) for c in self.columns])
        self.rows[row_key(row, self.axes)] = row

    def _write(self, cells: list[str]) -> None:
        assert self._out is not None
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        self._out.write(buf.getvalue())  # one write per row: a kill cuts at most this row
        self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row[c]) for c in columns])
    write_atomic(path, buf.getvalue())


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
