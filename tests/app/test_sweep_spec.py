"""The sweep file's grid: key forms, order, what a point's run is given."""

from __future__ import annotations

from app.sweep.driver import tasks_of
from app.sweep.point import scenario_of
from app.sweep.spec import builtin_sweep, parse_sweep

TEXT = """\
scenario = "conversion"
duration_us = 100
seeds = 3
[fixed]
timing.kick_ns = 6000
policy = "upstream"
[axes]
timing.vp_entry_ns = [1000, 3000]
"workload.zap_pages" = [8, 16]
vcpus = [2, 4]
"""


def test_dotted_and_quoted_keys_mean_the_same_and_keep_file_order() -> None:
    sweep = parse_sweep(TEXT, "t.toml")
    assert sweep.axis_names == ["timing.vp_entry_ns", "workload.zap_pages", "vcpus"]
    assert sweep.fixed == {"timing.kick_ns": 6000, "policy": "upstream"}
    points = sweep.points()
    assert len(points) == 8 and sweep.runs() == 24
    assert points[0] == {"timing.vp_entry_ns": 1000, "workload.zap_pages": 8, "vcpus": 2}
    assert points[1]["vcpus"] == 4  # the last axis varies fastest


def test_a_task_gets_the_fixed_and_axis_values() -> None:
    """Timing and workload values replace the scenario's own; config fields reach the
    config; each (point, seed) is one task, the costliest first."""
    tasks = tasks_of(parse_sweep(TEXT, "t.toml"))
    assert len(tasks) == 24 and tasks[0].point["vcpus"] == 4 and tasks[-1].point["vcpus"] == 2
    task = next(t for t in tasks if t.point["timing.vp_entry_ns"] == 3000)
    scenario = scenario_of(task)
    assert scenario.timing.kick_ns == 6000 and scenario.timing.vp_entry_ns == 3000
    assert scenario.workload.zap_pages == task.point["workload.zap_pages"]
    assert scenario.workload.zap_interval_ns > 0  # the rest stays the scenario's own
    assert {t.seed for t in tasks} == {1, 2, 3}


def test_the_builtin_retry_budget_sweep() -> None:
    """retry max 0..64, TD sizes up to 128 vCPUs, bounded against upstream and backoff,
    zero-step on, timing assumptions at two or three values each."""
    sweep = builtin_sweep("retry-budget")
    assert sweep.axes["retry_max"][0] == 0 and sweep.axes["retry_max"][-1] == 64
    assert max(sweep.axes["vcpus"]) >= 128
    assert {"bounded", "upstream", "backoff"} <= set(sweep.axes["policy"])
    assert sweep.fixed["zero_step"] is True
    timing = [a for a in sweep.axes if a.startswith("timing.")]
    assert timing and all(2 <= len(sweep.axes[a]) <= 3 for a in timing)
    assert sweep.seeds >= 3
