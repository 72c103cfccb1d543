"""Scenarios: a TD's workload described in a TOML file, and the built-in ones."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import afford
from engine.build import Builder
from engine.buildvcpu import Build, InitVcpuSpec
from engine.config import VCPUS_RANGE, Config, check_field
from engine.errors import ConfigError, ConfigErrors, ScenarioError
from engine.guest import PAGES_PER_MIB, Layout
from engine.hostactors import install
from engine.pagebytes import fill
from engine.params import Timing, Workload, override
from engine.script import (
    ACTOR_KEYS,
    ARRAY_TABLES,
    MEMORY_FAULT_KEYS,
    STEP_COMMON_KEYS,
    STEP_KEYS,
    VCPU_KEYS,
    ActorSpec,
    Checker,
    SignalSpec,
    VcpuSpec,
    make_guest,
    parse_actors,
    parse_vcpus,
)
from engine.vcpu import Vcpu
from engine.zap import Zapper

if TYPE_CHECKING:
    from engine.sim import Simulation

BUILTIN_NAMES = ("boot", "conversion", "zero-step")
TOP_KEYS = ("name", "description", "source", "policies", "duration_us",
            "gallery_duration_us", "td", "timing", "workload", *ARRAY_TABLES)
TD_KEYS = ("vcpus", "module_version", "zero_step", "policy", "retry_max", "seed",
           "sept_ve_disable")
TD_ATTRIBUTES = ("sept_ve_disable",)  # TD attributes: not config fields
DEFAULT_DURATION_US = 100_000
MAX_DURATION_US = 10_000_000_000
VCPU_START_STAGGER_NS = 250  # vCPUs start a little apart, in index order


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario. `td` holds config defaults the file sets."""

    name: str
    description: str
    source: str = ""
    duration_us: int = DEFAULT_DURATION_US
    # The policies the case is meant to be compared under (the gallery runs each); empty:
    # only the file's own.
    policies: tuple[str, ...] = ()
    # A shorter time for the race gallery (docs/gallery.md) than `duration_us`; 0: the same.
    gallery_duration_us: int = 0
    td: dict[str, Any] = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)
    workload: Workload = field(default_factory=Workload)
    vcpu_specs: tuple[VcpuSpec, ...] = ()  # [[vcpu]] tables
    shared: tuple[tuple[int, int], ...] = ()  # [[shared]] page ranges
    actors: tuple[ActorSpec, ...] = ()  # [[zap]], [[signal]], [[memslot]], [[prefault]], ...
    sept_ve_disable: bool = False  # TD attribute: a PENDING-page access exits (no #VE)

    @property
    def scripted(self) -> bool:
        return bool(self.vcpu_specs or self.shared or self.actors or self.sept_ve_disable)

    def min_vcpus(self) -> int:
        """The fewest vCPUs a run needs for every [[vcpu]] and [[signal]] table to apply."""
        named = [i for spec in self.vcpu_specs for i in spec.indices]
        named += [a.vcpu for a in self.actors if isinstance(a, SignalSpec)]
        return max(named, default=-1) + 1

    def populate(self, sim: Simulation) -> None:
        """Create the actors of this scenario in `sim` and schedule their first events.

        The order of creation is part of the log's determinism: build, vCPUs, the
        workload's zap thread, then the file's host actors. A [[vcpu]] or [[signal]] table
        naming a vCPU the run does not have is left out (Scenario.config refuses that).
        """
        layout: Layout = sim.layout
        for lo, hi in self.shared:
            sim.shared_ranges.append((lo, hi))
            fill(sim.shared_attr, lo, hi, 1)
        specs = {i: spec for spec in self.vcpu_specs for i in spec.indices}
        start_ns = 0
        init = next((a for a in self.actors if isinstance(a, InitVcpuSpec)), None)
        if init is not None:  # the build with KVM_TDX_INIT_VCPU beside it
            start_ns = Build(sim, self.workload.build_pages, init,
                             lambda: _start_vcpus(sim)).end_estimate_ns
        elif self.workload.build_pages:
            builder = Builder(sim, self.workload.build_pages, lambda: _start_vcpus(sim))
            start_ns = builder.end_estimate_ns
        for i in range(sim.config.vcpus):
            spec = specs.get(i)
            guest = make_guest(spec, self.workload, layout, i, sim.rng)
            vcpu = Vcpu(sim, i, guest, spec.memory_fault_ignore if spec else 0)
            if spec is not None:
                vcpu.host_delay_ns = spec.host_delay_ns
                vcpu.ve_handler = spec.ve_handler
            sim.vcpus.append(vcpu)
        if init is None and not self.workload.build_pages:
            _start_vcpus(sim)
        if self.workload.zap_pages:
            sim.host_actors.append(Zapper(sim, 0, self.workload.zap_pages,
                                          self.workload.zap_interval_ns, start_ns))
        install(sim, self.actors)

    def config(self, **overrides: Any) -> Config:
        """The run config: contract defaults, then this file's [td], then `overrides`."""
        values = {"scenario": self.name, **self.td, **overrides}
        config = Config().with_changes(values)
        need = self.min_vcpus()
        if config.vcpus < need:
            raise ConfigErrors([ConfigError("vcpus", (
                f"scenario {self.name!r} names vCPU {need - 1} in its [[vcpu]] or [[signal]] "
                f"tables; accepts an integer from {need} to {VCPUS_RANGE[1]}"))])
        return config


def _start_vcpus(sim: Simulation) -> None:
    """Every vCPU's first TDH.VP.ENTER, a little apart: at once, or when the build is done."""
    for i, vcpu in enumerate(sim.vcpus):
        sim.at(sim.now + i * VCPU_START_STAGGER_NS, vcpu.enter)


def _err(where: str, key: str, message: str) -> str:
    return f"{where}: {key}: {message}"


def parse(text: str, where: str = "<scenario>") -> Scenario:
    """Parse and validate scenario TOML; raises ScenarioError listing every problem."""
    afford.check_source(text, where)  # size and nesting before the parser recurses
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{where}: not valid TOML: {exc}"]) from None
    errors: list[str] = []
    for key in data:
        if key not in TOP_KEYS:
            errors.append(_err(where, key, f"unknown key; accepted: {', '.join(TOP_KEYS)}"))
    name = data.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        errors.append(_err(where, "name", "required: a name of letters, digits, '-', '_' or '.'"))
    description = data.get("description", "")
    if not isinstance(description, str) or not description:
        errors.append(_err(where, "description", "required: a one-line text"))
    source = data.get("source", "")
    if not isinstance(source, str):
        errors.append(_err(where, "source", "must be a text (URL or Message-ID)"))
    policies = _policies(data.get("policies", []), where, errors)
    duration = data.get("duration_us", DEFAULT_DURATION_US)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION_US:
        errors.append(_err(where, "duration_us", f"must be an integer from 1 to {MAX_DURATION_US}"))
    gallery_us = data.get("gallery_duration_us", 0)
    if "gallery_duration_us" in data and (
            isinstance(gallery_us, bool) or not isinstance(gallery_us, int)
            or not 1 <= gallery_us <= (duration if isinstance(duration, int) else MAX_DURATION_US)):
        errors.append(_err(where, "gallery_duration_us", "must be an integer from 1 to the "
                                                         "file's duration_us"))
    td = _table(data, "td", where, errors)
    sept_ve_disable = td.pop("sept_ve_disable", False)
    if not isinstance(sept_ve_disable, bool):
        errors.append(_err(where, "td.sept_ve_disable", "must be true or false"))
    for key, value in td.items():
        if key not in TD_KEYS:
            errors.append(_err(where, f"td.{key}", f"unknown key; accepted: {', '.join(TD_KEYS)}"))
        elif (problem := check_field(key, value)) is not None:
            errors.append(_err(where, f"td.{key}", problem.message))
    timing, workload = Timing(), Workload()
    for section in ("timing", "workload"):
        values = _table(data, section, where, errors)
        try:
            if section == "timing":
                timing = override(timing, values, section)
            else:
                workload = override(workload, values, section)
        except ConfigError as exc:
            errors.append(_err(where, exc.field, exc.message))
    if not 10_000_000 <= timing.hp_lock_timeout_ns <= 100_000_000_000:
        errors.append(_err(where, "timing.hp_lock_timeout_ns", "must be from 10 ms to 100 s"))
    vcpus = td["vcpus"] if "vcpus" in td and check_field("vcpus", td["vcpus"]) is None else None
    check = Checker(where, errors, max(workload.td_memory_mib, 1) * PAGES_PER_MIB, vcpus)
    vcpu_specs = parse_vcpus(data, check)
    shared, actors = parse_actors(data, check)
    if errors:
        raise ScenarioError(errors)
    assert isinstance(name, str)
    return afford.checked(Scenario(
        name=name, description=description, source=source, policies=policies,
        duration_us=duration, gallery_duration_us=gallery_us, td=td,
        timing=timing, workload=workload, vcpu_specs=vcpu_specs, shared=shared, actors=actors,
        sept_ve_disable=sept_ve_disable is True), where)


def _policies(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    """The top-level `policies` list: distinct known policy names."""
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        errors.append(_err(where, "policies", "must be a list of policy names"))
        return ()
    for name in value:
        if (problem := check_field("policy", name)) is not None:
            errors.append(_err(where, "policies", problem.message))
    if len(set(value)) != len(value):
        errors.append(_err(where, "policies", "names a policy twice"))
    return tuple(value)


def accepted_keys() -> dict[str, tuple[str, ...]]:
    """Every table of the format and the keys it accepts, by the heading that documents it
    in docs/scenario-format.md (a test checks each key appears under its heading)."""
    out: dict[str, tuple[str, ...]] = {
        "top level": TOP_KEYS,
        "[td]": TD_KEYS,
        "[timing]": tuple(f.name for f in fields(Timing)),
        "[workload]": tuple(f.name for f in fields(Workload)),
        "[[vcpu]]": VCPU_KEYS,
        "memory_fault": MEMORY_FAULT_KEYS,
        "script steps": STEP_COMMON_KEYS,  # taken by every step kind
    }
    for kind, (required, optional) in STEP_KEYS.items():
        out[f'step = "{kind}"'] = required + optional
    for table, (required, optional) in ACTOR_KEYS.items():
        out[f"[[{table}]]"] = required + optional
    return out


def _table(data: dict[str, Any], key: str, where: str, errors: list[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        errors.append(_err(where, key, "must be a table"))
        return {}
    return value


def load(path: str | Path) -> Scenario:
    """Parse a scenario file; errors name the file."""
    path = Path(path)
    try:
        text = afford.read_source(path)  # bounded: a path may name /dev/zero
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse(text, str(path))


_BUILTIN_CACHE: dict[str, Scenario] = {}


def builtin_text(name: str) -> str:
    return resources.files("engine.scenarios").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def builtin_scenario(name: str) -> Scenario:
    """A built-in scenario by name; ScenarioError for an unknown name."""
    if name not in BUILTIN_NAMES:
        raise ScenarioError([f"unknown scenario {name!r}; known: {', '.join(BUILTIN_NAMES)}"])
    if name not in _BUILTIN_CACHE:
        _BUILTIN_CACHE[name] = parse(builtin_text(name), f"{name}.toml")
    return _BUILTIN_CACHE[name]


def builtin_scenarios() -> list[Scenario]:
    return [builtin_scenario(name) for name in BUILTIN_NAMES]
