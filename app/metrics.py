"""Prometheus exposition: per-run-label counters over every run this process simulated."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.config import FIELDS, Config
from engine.sim import COMPILED
from engine.status import OPERANDS, SEAMCALL_LEAVES, TDCALL_LEAVES
from engine.summary import BUSY_SLOTS, Tally

PREFIX = "tdx_contention_"
MAIN, TWIN = "main", "twin"  # the `run` label: the current run, and its compare twin
# Attempts per logical call; 17 is where the seed's retry budget of 16 runs out.
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 8, 16, 17, 32, 64, 128, 256, 512, 1025)


@dataclass
class _Series:
    """Everything counted under one `run` label."""

    by_leaf: dict[str, list[int]] = field(default_factory=dict)  # Tally.by_leaf's layout
    zero_step: int = 0
    calls: dict[int, int] = field(default_factory=dict)
    sim_total_ns: int = 0
    clock_ns: int = 0  # the run's simulated clock when last added
    config: Config = field(default_factory=Config)
    run_id: str = ""
    started: float = 0.0


class Metrics(Collector):
    """Cumulative counts fed by the runner thread, read by a per-app registry on scrape.

    Counting is done by the runner from its per-frame tallies, so a scrape costs nothing
    on the engine path and the label sets stay fixed (every leaf, every operand). Each
    series carries `run`: "main" for the current run, "twin" for its compare twin.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {MAIN: _Series()}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add(self, part: Tally, *, run: str = MAIN, sim_ns: int | None = None) -> None:
        """Count a tick's tally. `sim_ns` is the run's simulated clock after it; without
        it the run is taken to be in lockstep with the main run (a compare twin)."""
        with self._lock:
            s = self._series.setdefault(run, _Series())
            for leaf, counts in part.by_leaf.items():
                mine = s.by_leaf.setdefault(leaf, [0] * len(counts))
                for i, n in enumerate(counts):
                    mine[i] += n
            s.zero_step += part.zero_step_activations
            for attempts, n in part.calls_by_attempts.items():
                s.calls[attempts] = s.calls.get(attempts, 0) + n
            clock = sim_ns if sim_ns is not None else self._series[MAIN].clock_ns
            s.sim_total_ns += clock - s.clock_ns if clock >= s.clock_ns else clock
            s.clock_ns = clock

    def set_config(self, config: Config, *, run: str = MAIN, run_id: str | None = None) -> None:
        """The run's live config (config_info); a new `run_id` marks a new run."""
        with self._lock:
            s = self._series.setdefault(run, _Series())
            s.config = config
            if run_id is not None and run_id != s.run_id:
                s.run_id, s.started, s.clock_ns = run_id, time.time(), 0

    def remove(self, run: str) -> None:
        """Stop exposing a run label's series (the compare twin, when compare stops)."""
        with self._lock:
            if run != MAIN:
                self._series.pop(run, None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = self._families()
        yield from families
        # Which engine build runs: the mypyc-compiled one is about 5x faster.
        yield InfoMetricFamily(PREFIX + "engine", "the simulation engine's build",
                               value={"build": "compiled" if COMPILED else "pure"})

    def _families(self) -> list[Metric]:
        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, labels=["run", *labels])

        seamcalls = counter("seamcall_attempts", "SEAMCALL attempts (host to module)", ["leaf"])
        tdcalls = counter("tdcall_attempts", "TDCALL attempts (guest to module)", ["leaf"])
        busy = counter("busy", "attempts that returned a BUSY status", ["operand", "leaf"])
        retries = counter("retries", "attempts with attempt > 1", ["leaf"])
        giveups = counter("giveups", "BUSY handed back to the caller", ["leaf"])
        zero_step = counter("zero_step_activations",
                            "VP.ENTERs on which the zero-step filter fired", [])
        simulated = counter("simulated_seconds", "simulated time advanced", [])
        retry_max = GaugeMetricFamily(PREFIX + "retry_max", "current retry budget",
                                      labels=["run"])
        enabled = GaugeMetricFamily(PREFIX + "zero_step_enabled",
                                    "1 when zero-step detection is on", labels=["run"])
        config_info = InfoMetricFamily(PREFIX + "config", "the run's live config",
                                       labels=["run"])
        run_info = InfoMetricFamily(PREFIX + "run", "the run being simulated", labels=["run"])
        histogram = HistogramMetricFamily(PREFIX + "attempts_per_call",
                                          "attempts per completed logical call", labels=["run"])
        out: list[Metric] = [seamcalls, tdcalls, busy, retries, giveups, zero_step, simulated,
                             retry_max, enabled, config_info, run_info, histogram]
        for run, s in self._series.items():
            for leaves, family in ((SEAMCALL_LEAVES, seamcalls), (TDCALL_LEAVES, tdcalls)):
                for leaf in leaves:
                    family.add_metric([run, leaf], self._leaf(s, leaf, 0))
            for leaf in (*SEAMCALL_LEAVES, *TDCALL_LEAVES):
                retries.add_metric([run, leaf], self._leaf(s, leaf, 2))
                giveups.add_metric([run, leaf], self._leaf(s, leaf, 3))
                for operand in OPERANDS:
                    busy.add_metric([run, operand, leaf], self._leaf(s, leaf, BUSY_SLOTS[operand]))
            zero_step.add_metric([run], s.zero_step)
            simulated.add_metric([run], s.sim_total_ns / 1e9)
            retry_max.add_metric([run], s.config.retry_max)
            enabled.add_metric([run], int(s.config.zero_step))
            config_info.add_metric([run], {k: _label(getattr(s.config, k)) for k in FIELDS})
            run_info.add_metric([run], {"run_id": s.run_id, "scenario": s.config.scenario,
                                        "started": f"{s.started:.0f}"})
            histogram.add_metric([run], *self._buckets(s))
        return out

    @staticmethod
    def _leaf(s: _Series, leaf: str, slot: int) -> int:
        counts = s.by_leaf.get(leaf)
        return counts[slot] if counts is not None and slot < len(counts) else 0

    @staticmethod
    def _buckets(s: _Series) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets and the sum of the attempts-per-call histogram."""
        buckets: list[tuple[str, float]] = []
        for bound in ATTEMPT_BUCKETS:
            buckets.append((str(float(bound)), sum(n for k, n in s.calls.items() if k <= bound)))
        buckets.append(("+Inf", sum(s.calls.values())))
        return buckets, sum(k * n for k, n in s.calls.items())


def _label(value: object) -> str:
    """A config value as a label: booleans as true/false, like the JSON config."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
