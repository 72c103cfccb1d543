"""A sweep's rows are exactly the summaries of `tdx-contention run` for the same point."""

from __future__ import annotations

import json
from pathlib import Path

from engine.scenario import builtin_text
from tests.app.sweep_helpers import cli, rows, write

COUNTS = ("sim_ns", "attempts", "busy", "retries", "giveups", "zero_step_activations",
          "kvm_bugs")
SWEEP = """\
scenario = "zero-step"
duration_us = 700
seeds = 2
[axes]
vcpus = [4, 12]
policy = ["bounded", "backoff"]
retry_max = [1, 16]
"timing.retry_gap_ns" = [100, 900]
"""


def test_rows_equal_run_json(tmp_path: Path) -> None:
    """For several points (a timing axis among them), every count of the row, kvm_bugs
    included, is what `run --json` prints; `calls` is the number of records with attempt 1
    in the run's event log."""
    sweep = write(tmp_path / "grid.toml", SWEEP)
    done = cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--workers", "2", "--no-png")
    assert done.returncode == 0, done.stderr
    table = rows(tmp_path / "out" / "points.csv")
    assert len(table) == 2 * 2 * 2 * 2 * 2
    picked = [r for r in table if (r["vcpus"], r["policy"], r["retry_max"]) in
              {("4", "bounded", "1"), ("12", "backoff", "16"), ("12", "bounded", "1")}]
    picked = [r for r in picked if r["seed"] == "2" or r["timing.retry_gap_ns"] == "900"]
    assert len(picked) >= 4
    text = builtin_text("zero-step")
    for i, row in enumerate(picked):
        scenario = write(tmp_path / f"s{i}.toml",
                         f"{text}\n[timing]\nretry_gap_ns = {row['timing.retry_gap_ns']}\n")
        log = tmp_path / f"s{i}.jsonl"
        run = cli("run", "--scenario-file", str(scenario), "--vcpus", row["vcpus"],
                  "--policy", row["policy"], "--retry-max", row["retry_max"],
                  "--seed", row["seed"], "--duration-us", "700", "--json", "--export", str(log))
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert {k: int(row[k]) for k in COUNTS} == {k: summary.get(k, 0) for k in COUNTS}
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert int(row["calls"]) == sum(1 for r in records if r.get("attempt") == 1)
        assert json.loads(row["attempts_per_call"]) == summary["attempts_per_call"]


def test_summary_and_sweep_json_hold_every_row(tmp_path: Path) -> None:
    """summary.csv has one row per point with the contract's columns; sweep.json holds the
    resolved sweep, versions and every row; CSV floats are Python's repr."""
    sweep = write(tmp_path / "grid.toml", SWEEP.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "out"
    assert cli("sweep", str(sweep), "--out", str(out), "--no-png").returncode == 0
    summary = rows(out / "summary.csv")
    assert len(summary) == 16
    assert list(summary[0])[:13] == [
        "vcpus", "policy", "retry_max", "timing.retry_gap_ns", "seeds", "calls", "giveups",
        "giveup_rate", "giveup_rate_lo", "giveup_rate_hi", "busy_rate", "attempts_p99",
        "zero_step_activations"]
    for row in summary:
        rate = float(row["giveup_rate"])
        assert rate == int(row["giveups"]) / int(row["calls"])
        assert repr(rate) == row["giveup_rate"]
        assert float(row["giveup_rate_lo"]) <= rate <= float(row["giveup_rate_hi"])
    data = json.loads((out / "sweep.json").read_text())
    assert data["sweep"]["axes"]["policy"] == ["bounded", "backoff"]
    assert data["versions"]["engine"] and data["state"] == "done"
    assert len(data["rows"]) == 16
    assert (out / "report.html").is_file()
