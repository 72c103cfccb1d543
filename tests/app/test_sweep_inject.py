"""BUSY injection as a sweep axis: `"workload.inject_busy_every" = [0, 47]` is accepted and
each point's run has (or has not) the injected BUSY of that point."""

from __future__ import annotations

from app.sweep.point import Task, summary_of
from app.sweep.spec import parse_sweep
from engine.scenario import builtin_text

SWEEP = """\
scenario = "conversion"
duration_us = 2000
seeds = 1
[fixed]
policy = "upstream"
[axes]
"workload.inject_busy_every" = [0, 47]
"""


def test_inject_busy_every_is_a_sweep_axis() -> None:
    sweep = parse_sweep(SWEEP, "grid.toml")
    points = sweep.points()
    assert points == [{"workload.inject_busy_every": 0}, {"workload.inject_busy_every": 47}]
    injected = []
    for point in points:
        task = Task(point, 1, sweep.fixed, sweep.duration_us, builtin_text("conversion"),
                    builtin="conversion")
        summary = summary_of(task)
        injected.append(summary["injected_busy"])
        assert summary["kvm_bugs"] == 0  # upstream absorbs it
    assert injected[0] == 0 < injected[1]
