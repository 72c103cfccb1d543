"""The sweep file: TOML naming a scenario, a duration, seeds, fixed fields and axes."""

from __future__ import annotations

import hashlib
import itertools
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from app.sweep import limits
from engine import afford
from engine.config import FIELDS, check_field
from engine.errors import ConfigError, ConfigErrors, ScenarioError
from engine.params import Timing, Workload, override
from engine.scenario import BUILTIN_NAMES, MAX_DURATION_US, Scenario, builtin_scenario, parse

TOP_KEYS = ("name", "description", "scenario", "scenario_file", "duration_us", "seeds",
            "fixed", "axes")
# Config fields a sweep may set: the scenario is named at the top, seeds come from
# `seeds`, and speed only paces live runs.
SWEPT_FIELDS = tuple(f for f in FIELDS if f not in ("scenario", "seed", "speed"))
SECTIONS: dict[str, Timing | Workload] = {"timing": Timing(), "workload": Workload()}
MAX_SEEDS = 10_000
MAX_RUNS = 1_000_000


class SweepError(Exception):
    """A sweep file is invalid; every message names the file and the key."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Sweep:
    """A parsed, validated sweep; `axes` keep the file's order (it is the column order)."""

    name: str
    description: str
    scenario_name: str  # the scenario's own name, for the report
    scenario_text: str  # the TOML the points parse: every point is self-contained
    duration_us: int
    seeds: int
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    builtin: str | None = None  # the built-in scenario's name, when it is one

    @property
    def axis_names(self) -> list[str]:
        return list(self.axes)

    def points(self) -> list[dict[str, Any]]:
        """The cross product of the axes, in file order (the last axis varies fastest)."""
        names = self.axis_names
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.axes[n] for n in names))]

    def count(self) -> int:
        """How many points, without building them (a grid may be refused for its size)."""
        return math.prod(len(v) for v in self.axes.values())

    def runs(self) -> int:
        return self.count() * self.seeds

    def scenario(self) -> Scenario:
        if self.builtin is not None:
            return builtin_scenario(self.builtin)
        return parse(self.scenario_text, f"{self.scenario_name}.toml")

    def recipe(self) -> dict[str, Any]:
        """What a row depends on besides its point and seed: rows of two sweeps with the
        same recipe may share a points.csv."""
        return {"scenario": self.scenario_name,
                "scenario_sha256": hashlib.sha256(self.scenario_text.encode()).hexdigest(),
                "duration_us": self.duration_us, "fixed": self.fixed, "axes": self.axis_names}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "scenario": self.scenario_name, "builtin_scenario": self.builtin,
                "duration_us": self.duration_us, "seeds": self.seeds, "fixed": self.fixed,
                "axes": self.axes, "points": self.count(), "runs": self.runs(),
                "scenario_text": self.scenario_text}


def _flatten(table: dict[str, Any]) -> dict[str, Any]:
    """`timing.x = 1` (a nested table in TOML) and `"timing.x" = 1` mean the same key."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def key_problem(key: str) -> str | None:
    """What is wrong with a key of [fixed] or [axes] itself, or None."""
    accepted = f"accepted: {', '.join(SWEPT_FIELDS)}, timing.NAME, workload.NAME"
    section, dot, name = key.partition(".")
    if dot:
        if section not in SECTIONS:
            return f"unknown key; {accepted}"
        known = [f.name for f in fields(SECTIONS[section])]
        if name not in known:
            return f"unknown {section} parameter; known: {', '.join(known)}"
        return None
    if key not in SWEPT_FIELDS:
        why = {"seed": "seeds 1..N come from the top-level `seeds`",
               "scenario": "name the scenario with the top-level `scenario`",
               "speed": "speed only paces live runs"}.get(key, "unknown key")
        return f"{why}; {accepted}"
    return None


def check_value(key: str, value: Any) -> str | None:
    """What is wrong with `value` for a sweepable key (or with the key), or None."""
    if (problem := key_problem(key)) is not None:
        return problem
    section, dot, name = key.partition(".")
    if dot:
        try:
            override(SECTIONS[section], {name: value}, section)
        except ConfigError as exc:
            return exc.message
        return None
    bad = check_field(key, value)
    return bad.message if bad is not None else None


def _int(data: dict[str, Any], key: str, default: int | None, lo: int, hi: int,
         err: Any) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        err(key, f"required: an integer from {lo} to {hi}" if default is None
            else f"must be an integer from {lo} to {hi}")
        return lo
    return value


def _scenario_source(data: dict[str, Any], base: Path | None, err: Any,
                     ) -> tuple[str | None, str]:
    """(built-in name or None, scenario TOML text)."""
    has_name, has_file = "scenario" in data, "scenario_file" in data
    if has_name == has_file:
        err("scenario", "give exactly one of scenario = NAME or scenario_file = PATH")
        return None, ""
    if has_name:
        name = data["scenario"]
        if name not in BUILTIN_NAMES:
            err("scenario", f"unknown scenario {name!r}; known: {', '.join(BUILTIN_NAMES)}")
            return None, ""
        return name, resources.files("engine.scenarios").joinpath(f"{name}.toml").read_text(
            encoding="utf-8")
    path = data["scenario_file"]
    if base is None:
        err("scenario_file", "not accepted here (an uploaded sweep names a built-in scenario)")
        return None, ""
    if not isinstance(path, str) or not path:
        err("scenario_file", "must be a path to a scenario file")
        return None, ""
    full = base / path
    try:
        return None, afford.read_source(full)
    except OSError as exc:
        err("scenario_file", f"cannot read {str(full)!r}: {exc.strerror}")
    except ScenarioError as exc:
        err("scenario_file", "; ".join(exc.messages))
    return None, ""


def parse_sweep(text: str, where: str = "<sweep>", base: Path | None = None,
                default_name: str = "sweep") -> Sweep:
    """Parse and validate sweep TOML; raises SweepError naming every bad key.

    `base` is the directory `scenario_file` is relative to; None refuses scenario files.
    """
    errors: list[str] = []

    def err(key: str, message: str) -> None:
        errors.append(f"{where}: {key}: {message}")

    try:
        afford.check_source(text, where)  # size, nesting, dotted keys: before tomllib
        data = tomllib.loads(text)
    except ScenarioError as exc:
        raise SweepError(exc.messages) from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError([f"{where}: not valid TOML: {exc}"]) from None
    for key in data:
        if key not in TOP_KEYS:
            err(key, f"unknown key; accepted: {', '.join(TOP_KEYS)}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        err("name", "must be a name of letters, digits, '-', '_' or '.'")
    description = data.get("description", "")
    if not isinstance(description, str):
        err("description", "must be a text")
    builtin, scenario_text = _scenario_source(data, base, err)
    duration_us = _int(data, "duration_us", None, 1, MAX_DURATION_US, err)
    seeds = _int(data, "seeds", 1, 1, MAX_SEEDS, err)
    fixed, axes = _tables(data, err)
    scenario = _scenario(scenario_text, where, err) if scenario_text else None
    if errors:
        raise SweepError(errors)
    assert scenario is not None
    sweep = Sweep(name=str(name), description=str(description), scenario_name=scenario.name,
                  scenario_text=scenario_text, duration_us=duration_us, seeds=seeds,
                  fixed=fixed, axes=axes, builtin=builtin)
    _check_points(sweep, scenario, err)
    if errors:
        raise SweepError(errors)
    return sweep


def _tables(data: dict[str, Any], err: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for table in ("fixed", "axes"):
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            err(table, "must be a table")
            continue
        for key, value in _flatten(raw).items():
            where = f"{table}.{key}"
            if table == "fixed":
                if (problem := check_value(key, value)) is not None:
                    err(where, problem)
                fixed[key] = value
            elif _axis(key, value, fixed, where, err):
                axes[key] = value
    return fixed, axes


def _axis(key: str, values: Any, fixed: dict[str, Any], where: str, err: Any) -> bool:
    """Check one axis; True when it is usable (its values may still be reported)."""
    if key in fixed:
        err(where, "is also in [fixed]; a key is either fixed or an axis")
    if not isinstance(values, list) or not values:
        err(where, "must be a non-empty list of values")
        return False
    if (problem := key_problem(key)) is not None:
        err(where, problem)  # the key itself is wrong: say it once, not per value
        return False
    if len({repr(v) for v in values}) != len(values):
        err(where, "lists a value twice")
    for v in values:
        if (problem := check_value(key, v)) is not None:
            err(where, f"value {v!r}: {problem}")
    return True


def _scenario(text: str, where: str, err: Any) -> Scenario | None:
    try:
        return parse(text, "scenario_file")
    except ScenarioError as exc:
        for message in exc.messages:
            err("scenario_file", message)
        return None


def _check_points(sweep: Sweep, scenario: Scenario, err: Any) -> None:
    """Every axis value must make a valid run (a scenario may need more vCPUs)."""
    runs = sweep.runs()
    if runs > MAX_RUNS:
        err("axes", f"{runs} runs (points x seeds); at most {MAX_RUNS} are accepted")
        return
    for key, message in limits.problems(sweep, scenario):
        err(key, message)
    base = config_fields(sweep.fixed)
    for key, values in sweep.axes.items():
        for value in values:
            try:
                scenario.config(**{**base, **config_fields({key: value})})
            except (ConfigErrors, ConfigError) as exc:
                err(f"axes.{key}", f"value {value!r}: {exc}")


def config_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if "." not in k}


def section_fields(values: dict[str, Any], section: str) -> dict[str, Any]:
    prefix = section + "."
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file from disk; `scenario_file` is relative to the file's directory."""
    path = Path(path)
    try:
        text = afford.read_source(path)  # no further than the size limit (/dev/zero...)
    except OSError as exc:
        raise SweepError([f"{path}: cannot read: {exc.strerror}"]) from None
    except ScenarioError as exc:
        raise SweepError(exc.messages) from None
    return parse_sweep(text, str(path), path.parent, path.stem)


BUILTIN_PACKAGE = "app.sweep.builtin"


def builtin_names() -> list[str]:
    files = resources.files(BUILTIN_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    if name not in builtin_names():
        raise SweepError([f"--name: unknown sweep {name!r}; known: {', '.join(builtin_names())}"])
    return resources.files(BUILTIN_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


def builtin_sweep(name: str) -> Sweep:
    return parse_sweep(builtin_text(name), f"{name}.toml", None, name)
