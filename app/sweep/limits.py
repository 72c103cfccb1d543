"""What a sweep would cost: every point's run checked against the engine's limits."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine import afford
from engine.params import override

if TYPE_CHECKING:
    from app.sweep.spec import Sweep
    from engine.scenario import Scenario

MAX_CHECKED = 20_000  # beyond this many points, each axis value is checked on its own


def problems(sweep: Sweep, scenario: Scenario) -> list[tuple[str, str]]:
    """(sweep key, what is wrong) for points whose run no machine here could afford
    (engine.afford: memory, events per simulated microsecond); one message per key."""
    if sweep.count() <= MAX_CHECKED:
        points = sweep.points()
    else:
        first = {a: v[0] for a, v in sweep.axes.items()}
        points = [{**first, a: v} for a, values in sweep.axes.items() for v in values]
    found: dict[str, str] = {}
    for point in points:
        values = {**sweep.fixed, **point}
        run = with_values(scenario, values)
        vcpus = int(values.get("vcpus", scenario.td.get("vcpus", afford.DEFAULT_VCPUS)))
        for key, message in afford.problems(run, vcpus):
            where = (f"axes.{key}" if key in point else f"fixed.{key}" if key in sweep.fixed
                     else "axes.vcpus" if "vcpus" in point else f"scenario: {key}")
            found.setdefault(where, f"at {_point(point)}: {message}")
    return list(found.items())


def with_values(scenario: Scenario, values: dict[str, Any]) -> Scenario:
    """`scenario` with a point's `timing.*` and `workload.*` values applied."""
    timing = {k[7:]: v for k, v in values.items() if k.startswith("timing.")}
    workload = {k[9:]: v for k, v in values.items() if k.startswith("workload.")}
    if timing:
        scenario = replace(scenario, timing=override(scenario.timing, timing, "timing"))
    if workload:
        scenario = replace(scenario, workload=override(scenario.workload, workload, "workload"))
    return scenario


def _point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in point.items()) or "every point"
