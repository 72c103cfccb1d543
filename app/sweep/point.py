"""One point of a sweep for one seed: a pure call of the engine, run wherever a worker is."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from app.sweep.limits import with_values
from engine.run import run
from engine.scenario import Scenario, builtin_scenario, parse

# The per-row counts of points.csv, in column order (CONTRACT.md "Sweeps").
COUNTS = ("sim_ns", "attempts", "busy", "retries", "giveups", "calls",
          "zero_step_activations", "kvm_bugs")
_SCENARIOS: dict[str, Scenario] = {}  # per worker process: scenario text hash -> parsed


@dataclass(frozen=True)
class Task:
    """Everything a row depends on; small and picklable, so it travels to any worker."""

    point: dict[str, Any]  # axis name -> value
    seed: int
    fixed: dict[str, Any]
    duration_us: int
    scenario_text: str
    builtin: str | None = None

    @property
    def cost(self) -> int:
        """A rough relative cost (vCPUs^1.5 x microseconds), for the time-left estimate."""
        values = {**self.fixed, **self.point}
        # contention grows faster than the TD: measured, a 4x larger TD costs 8x to 15x
        return int(int(values.get("vcpus", 8)) ** 1.5 * self.duration_us)


def scenario_of(task: Task) -> Scenario:
    """The task's scenario with its timing and workload values applied."""
    if task.builtin is not None:
        scenario = builtin_scenario(task.builtin)
    else:
        key = hashlib.sha256(task.scenario_text.encode()).hexdigest()
        if key not in _SCENARIOS:
            _SCENARIOS[key] = parse(task.scenario_text, "scenario_file")
        scenario = _SCENARIOS[key]
    return with_values(scenario, {**task.fixed, **task.point})


def summary_of(task: Task) -> dict[str, Any]:
    """The summary `tdx-contention run --json` prints for this task's config, seed and time."""
    scenario = scenario_of(task)
    values = {**task.fixed, **task.point}
    fields = {k: v for k, v in values.items() if "." not in k}
    config = scenario.config(**fields, seed=task.seed)
    return run(config, scenario, task.duration_us * 1000)


def row_of(summary: dict[str, Any]) -> dict[str, Any]:
    """A points.csv row's counts from a run summary; `calls` are records with attempt 1."""
    return {
        "sim_ns": summary["sim_ns"], "attempts": summary["attempts"], "busy": summary["busy"],
        "retries": summary["retries"], "giveups": summary["giveups"],
        "calls": summary["attempts"] - summary["retries"],
        "zero_step_activations": summary["zero_step_activations"],
        "kvm_bugs": summary.get("kvm_bugs", 0),
        "attempts_per_call": summary["attempts_per_call"],
    }


class PointError(Exception):
    """A point that could not run, as a plain message: it crosses process boundaries
    (pickled back from a pool or Dask worker), which the engine's own errors may not."""


def run_task(task: Task) -> dict[str, Any]:
    """The row of one (point, seed): the axis values, the seed, then the counts."""
    try:
        return {**task.point, "seed": task.seed, **row_of(summary_of(task))}
    except Exception as exc:
        raise PointError(f"{type(exc).__name__}: {exc}") from None


def lower_priority(nice: int = 19) -> None:
    """Pool initializer: sweep workers yield the CPU to a live run (nice 19 by default)."""
    try:
        os.nice(max(0, nice - os.nice(0)))
    except OSError:  # not permitted: run as we are
        pass
