"""Resume and no loss: rows flushed as they finish, a rerun computes only what is missing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.sweep.driver import run_sweep
from app.sweep.spec import Sweep, parse_sweep
from tests.app.sweep_helpers import SMALL, cli, rows, sorted_lines, write

KEY = ("vcpus", "policy", "retry_max", "seed")
SLOW = """\
scenario = "zero-step"
duration_us = 1500
seeds = 6
[axes]
vcpus = [16, 24]
retry_max = [0, 1, 2, 4, 8]
"""


def _keys(path: Path) -> list[tuple[str, ...]]:
    return [tuple(r[k] for k in KEY if k in r) for r in rows(path)]


def test_rerun_computes_only_missing_rows(tmp_path: Path) -> None:
    """Rows taken out of points.csv come back, identical, and nothing else is recomputed."""
    sweep = write(tmp_path / "s.toml", SMALL)
    out = tmp_path / "out"
    assert cli("sweep", str(sweep), "--out", str(out), "--no-png").returncode == 0
    full = sorted_lines(out / "points.csv")
    lines = (out / "points.csv").read_text().splitlines(keepends=True)
    kept = lines[:-3]  # three rows lost
    marker = "999999999"  # a kept row's sim_ns edited: a recomputed row would overwrite it
    kept[1] = kept[1].replace(kept[1].split(",")[4], marker, 1)
    (out / "points.csv").write_text("".join(kept))
    again = cli("sweep", str(sweep), "--out", str(out), "--no-png")
    assert again.returncode == 0, again.stderr
    after = (out / "points.csv").read_text().splitlines()
    assert len(after) == len(lines) and marker in after[1]
    edited = lines[1].rstrip("\n")
    assert sorted(line for line in after if marker not in line) == sorted(
        line for line in full if line != edited)
    assert len(set(_keys(out / "points.csv"))) == len(after) - 1


def test_sigkill_mid_way_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL the sweep (and its workers) while rows are being written; the rerun fills
    the gaps, and the result equals an uninterrupted sweep row for row."""
    sweep = write(tmp_path / "slow.toml", SLOW)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "sweep", str(sweep), "--out",
                             str(out), "--workers", "2", "--no-png"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            process_group=0)
    points = out / "points.csv"
    end = time.monotonic() + 60
    while time.monotonic() < end and (not points.exists() or
                                      points.read_text().count("\n") < 8):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = points.read_text().count("\n") - 1
    assert 7 <= before < 60, "the kill came after the sweep had finished"
    again = cli("sweep", str(sweep), "--out", str(out), "--workers", "2", "--no-png")
    assert again.returncode == 0, again.stderr
    keys = _keys(points)
    assert len(keys) == 60 and len(set(keys)) == 60
    reference = tmp_path / "ref"
    assert cli("sweep", str(sweep), "--out", str(reference), "--no-png").returncode == 0
    assert sorted_lines(points) == sorted_lines(reference / "points.csv")


def test_a_cut_last_line_is_dropped_and_recomputed(tmp_path: Path) -> None:
    """A row cut short by a kill (no newline) is not read as a row and comes back whole."""
    sweep = write(tmp_path / "s.toml", SMALL)
    out = tmp_path / "out"
    assert cli("sweep", str(sweep), "--out", str(out), "--no-png").returncode == 0
    full = sorted_lines(out / "points.csv")
    text = (out / "points.csv").read_text()
    (out / "points.csv").write_text(text[:-25])
    assert cli("sweep", str(sweep), "--out", str(out), "--no-png").returncode == 0
    assert sorted_lines(out / "points.csv") == full


def test_a_failing_point_is_reported_and_the_rest_go_on(tmp_path: Path) -> None:
    """A point the engine refuses (a scenario naming vCPU 3 run with 2 vCPUs) is reported
    with its config and error; every other row is written; a rerun tries it again."""
    scenario = ('name = "four"\ndescription = "names vCPU 3"\n'
                '[[vcpu]]\nindex = 3\n')
    good = parse_sweep('scenario_file = "sc.toml"\nduration_us = 200\nseeds = 2\n'
                       '[axes]\nvcpus = [4, 6]\n', "s.toml", _dir(tmp_path, scenario))
    sweep = Sweep(**{**good.__dict__, "axes": {"vcpus": [2, 4, 6]}})
    result = run_sweep(sweep, tmp_path / "out", workers=2, png=False)
    assert result["state"] == "failed"
    failed = {(f["point"]["vcpus"], f["seed"]) for f in result["failures"]}
    assert failed == {(2, 1), (2, 2)}
    assert "vcpus" in result["failures"][0]["error"]
    assert sorted(r["vcpus"] for r in result["rows"]) == [4, 4, 6, 6]
    assert len(rows(tmp_path / "out" / "points.csv")) == 4


def test_stop_keeps_finished_rows(tmp_path: Path) -> None:
    """A stop (the server's cancel) ends the sweep after the running points; its rows stay
    and the sweep is 'cancelled'."""
    sweep = parse_sweep(SLOW, "slow.toml")
    stop = threading.Event()
    seen: list[int] = []

    def progress(p: object) -> None:
        seen.append(p.done)  # type: ignore[attr-defined]
        if p.done >= 3:  # type: ignore[attr-defined]
            stop.set()

    result = run_sweep(sweep, tmp_path / "out", workers=1, on_progress=progress, stop=stop,
                       png=False)
    assert result["state"] == "cancelled"
    assert 3 <= len(result["rows"]) < 60
    assert len(rows(tmp_path / "out" / "points.csv")) == len(result["rows"])


def _dir(tmp_path: Path, scenario: str) -> Path:
    write(tmp_path / "sc.toml", scenario)
    return tmp_path


def test_a_reader_never_truncates_a_row_being_written(tmp_path: Path) -> None:
    """The server polls points.csv while the sweep appends to it: reading a file whose last
    row has no newline yet leaves it alone; only the writer drops such a fragment."""
    from app.sweep.store import PointsFile

    sweep = write(tmp_path / "s.toml", SMALL)
    out = tmp_path / "out"
    assert cli("sweep", str(sweep), "--out", str(out), "--no-png").returncode == 0
    text = (out / "points.csv").read_text()
    cut = text[:-25]
    (out / "points.csv").write_text(cut)
    axes = parse_sweep(SMALL, "s.toml").axes
    assert len(PointsFile(out / "points.csv", axes).rows) == 15
    assert (out / "points.csv").read_text() == cut
    assert len(PointsFile(out / "points.csv", axes, repair=True).rows) == 15
    assert (out / "points.csv").read_text() == cut[: cut.rfind("\n") + 1]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    """A second sweep into a directory another one is writing exits 75 (try again later)
    and leaves its rows alone."""
    sweep = write(tmp_path / "slow.toml", SLOW)
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "app.cli", "sweep", str(sweep), "--out",
                              str(out), "--workers", "1", "--no-png"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        while not (out / "points.csv").exists() and time.monotonic() < end:
            time.sleep(0.05)
        second = cli("sweep", str(sweep), "--out", str(out), "--no-png")
        assert second.returncode == 75
        assert "in use by another sweep (pid" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    keys = _keys(out / "points.csv")
    assert len(keys) == len(set(keys))


def test_stop_with_parent_ends_an_orphaned_sweep(tmp_path: Path) -> None:
    """The server's sweep processes watch their parent: when it is SIGKILLed, the sweep
    finishes its running points, writes its files as cancelled and exits."""
    sweep = write(tmp_path / "slow.toml", SLOW)
    out = tmp_path / "out"
    spawn = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-m', 'app.cli', "
             f"'sweep', {str(sweep)!r}, '--out', {str(out)!r}, '--workers', '1', '--no-png', "
             "'--stop-with-parent'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", spawn])
    end = time.monotonic() + 60
    while not (out / "points.csv").exists() and time.monotonic() < end:
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    end = time.monotonic() + 60
    state = None
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((out / "sweep.json").read_text())["state"]
        if state == "cancelled":
            break
        time.sleep(0.1)
    assert state == "cancelled"
    assert 1 <= len(rows(out / "points.csv")) < 60
