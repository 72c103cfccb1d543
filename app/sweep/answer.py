"""The retry-budget answer: per TD size and policy, and how it moves with each assumption."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from app.sweep.spec import Sweep
from app.sweep.stats import answer, group
from engine.params import Timing, Workload

NONE = "none in the sweep"
DEFAULTS = {**{f"timing.{f.name}": f.default for f in fields(Timing)},
            **{f"workload.{f.name}": f.default for f in fields(Workload)}}


def is_assumption(axis: str) -> bool:
    """Timing and workload values are assumptions (MODEL.md section 6); the rest is design."""
    return axis.startswith(("timing.", "workload."))


def baseline(axis: str, values: list[Any], scenario_values: dict[str, Any]) -> Any:
    """The value an axis is held at while another one moves: the scenario's own value
    when the axis lists it, retry max 16 (the seed patch's), else the first value."""
    own = scenario_values.get(axis, DEFAULTS.get(axis))
    if is_assumption(axis) and own in values:
        return own
    if axis == "retry_max" and 16 in values:
        return 16
    return values[0]


def _rate(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    return (f"{row['giveup_rate']:.3g} [{row['giveup_rate_lo']:.2g}, "
            f"{row['giveup_rate_hi']:.2g}]")


def text(value: int | None) -> str:
    return NONE if value is None else str(value)


class Answers:
    """Answer tables from summary rows of a sweep whose axes include retry_max."""

    def __init__(self, axes: dict[str, list[Any]], summary: list[dict[str, Any]],
                 scenario_values: dict[str, Any]) -> None:
        self.axes = axes
        self.summary = summary
        self.assumptions = [a for a in axes if is_assumption(a)]
        self.design = [a for a in axes if a != "retry_max" and not is_assumption(a)]
        self.base = {a: baseline(a, v, scenario_values) for a, v in axes.items()}

    def _at(self, held: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in self.summary if all(r[k] == v for k, v in held.items())]

    def main(self) -> list[dict[str, Any]]:
        """One row per combination of the design axes (TD size, policy, ...), assumptions
        at their baseline: the smallest retry_max whose upper bound is below 1e-3."""
        held = {a: self.base[a] for a in self.assumptions}
        rows = group(self._at(held), self.design)
        return [{**dict(zip(self.design, key, strict=True)), "answer": text(answer(r))}
                for key, r in rows.items()]

    def moves(self) -> dict[str, list[dict[str, Any]]]:
        """For each assumption axis: the answer at each of its values, the others held."""
        out: dict[str, list[dict[str, Any]]] = {}
        for axis in self.assumptions:
            held = {a: self.base[a] for a in self.assumptions if a != axis}
            table = []
            for key, rows in group(self._at(held), self.design).items():
                by_value = group(rows, [axis])
                cells = {str(v): text(answer(by_value.get((v,), []))) for v in self.axes[axis]}
                table.append({**dict(zip(self.design, key, strict=True)), **cells})
            out[axis] = table
        return out

    def rates(self, axis: str) -> list[dict[str, Any]]:
        """For an assumption axis: the give-up rate and interval at the baseline retry max
        for each of its values (the rate moves even where the answer does not)."""
        held = {a: self.base[a] for a in self.assumptions if a != axis}
        held["retry_max"] = self.base["retry_max"]
        table = []
        for key, rows in group(self._at(held), self.design).items():
            by_value = {repr(r[axis]): r for r in rows}
            cells = {str(v): _rate(by_value.get(repr(v))) for v in self.axes[axis]}
            table.append({**dict(zip(self.design, key, strict=True)), **cells})
        return table

    def plain(self) -> str:
        """The main table as text, for the terminal."""
        head = [*self.design, "smallest retry_max with give-up upper bound < 1e-3"]
        lines = ["  ".join(head)]
        for row in self.main():
            lines.append("  ".join(str(row[k]) for k in self.design) + "  " + row["answer"])
        held = ", ".join(f"{a} = {self.base[a]}" for a in self.assumptions)
        if held:
            lines.append(f"(assumptions at {held})")
        return "\n".join(lines)


def scenario_values(result: dict[str, Any]) -> dict[str, Any]:
    """Every timing and workload value the points use (the scenario's, then [fixed])."""
    sweep = result["sweep"]
    scenario = parse_sweep_of(sweep).scenario()
    out = {f"timing.{f.name}": getattr(scenario.timing, f.name) for f in fields(scenario.timing)}
    out.update({f"workload.{f.name}": getattr(scenario.workload, f.name)
                for f in fields(scenario.workload)})
    out.update({k: v for k, v in sweep["fixed"].items() if is_assumption(k)})
    return out


def parse_sweep_of(sweep: dict[str, Any]) -> Any:
    """The Sweep back from sweep.json's resolved form (only its scenario is needed)."""
    return Sweep(name=sweep["name"], description=sweep["description"],
                 scenario_name=sweep["scenario"], scenario_text=sweep["scenario_text"],
                 duration_us=sweep["duration_us"], seeds=sweep["seeds"],
                 builtin=sweep.get("builtin_scenario"))


def curves(axes: dict[str, list[Any]], summary: list[dict[str, Any]],
           values: dict[str, Any], limit: int = 24) -> dict[str, Any]:
    """The dashboard's figure as data: give-up rate against retry max (or the first axis),
    one line per combination of the design axes, assumptions held at their baseline."""
    x_axis = "retry_max" if "retry_max" in axes else next(iter(axes), None)
    if x_axis is None:
        return {"x_axis": None, "lines": []}
    base = {a: baseline(a, v, values) for a, v in axes.items()}
    held = {a: base[a] for a in axes if a != x_axis and is_assumption(a)}
    by = [a for a in axes if a != x_axis and not is_assumption(a)]
    rows = [r for r in summary if all(r[k] == v for k, v in held.items())]
    order = {repr(v): i for i, v in enumerate(axes[x_axis])}
    lines = []
    for key, line in list(group(rows, by).items())[:limit]:
        line = sorted(line, key=lambda r: order.get(repr(r[x_axis]), 0))
        lines.append({
            "name": ", ".join(f"{k} {v}" for k, v in zip(by, key, strict=True)) or "all",
            "x": [r[x_axis] for r in line], "rate": [r["giveup_rate"] for r in line],
            "lo": [r["giveup_rate_lo"] for r in line], "hi": [r["giveup_rate_hi"] for r in line],
            "giveups": [r["giveups"] for r in line], "calls": [r["calls"] for r in line]})
    return {"x_axis": x_axis, "held": held, "lines": lines}
