"""Prometheus exposition: counters over every run this process simulated, config gauges."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.config import Config
from engine.sim import COMPILED
from engine.status import LEAVES, OPERANDS
from engine.summary import Tally

PREFIX = "tdx_contention_"
# Attempts per logical call; 17 is where the seed's retry budget of 16 runs out.
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 8, 16, 17, 32, 64, 128, 256, 512, 1025)


class Metrics(Collector):
    """Cumulative counts fed by the runner thread, read by a per-app registry on scrape.

    Counting is done by the runner from its per-frame tallies, so a scrape costs nothing
    on the engine path and the label sets stay fixed (every leaf, every operand).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts_by_leaf = dict.fromkeys(LEAVES, 0)
        self._busy_by_operand = dict.fromkeys(OPERANDS, 0)
        self._retries = self._giveups = self._zero_step = 0
        self._calls: dict[int, int] = {}
        self._retry_max = 0
        self._zero_step_enabled = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add(self, tally: Tally) -> None:
        with self._lock:
            for leaf, counts in tally.by_leaf.items():
                self._attempts_by_leaf[leaf] = self._attempts_by_leaf.get(leaf, 0) + counts[0]
            for operand, n in tally.busy_by_operand.items():
                self._busy_by_operand[operand] = self._busy_by_operand.get(operand, 0) + n
            self._retries += tally.retries
            self._giveups += tally.giveups
            self._zero_step += tally.zero_step_activations
            for attempts, n in tally.calls_by_attempts.items():
                self._calls[attempts] = self._calls.get(attempts, 0) + n

    def set_config(self, config: Config) -> None:
        with self._lock:
            self._retry_max = config.retry_max
            self._zero_step_enabled = config.zero_step

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            attempts = CounterMetricFamily(PREFIX + "seamcall_attempts",
                                           "SEAMCALL and TDCALL attempts", labels=["leaf"])
            for leaf, n in self._attempts_by_leaf.items():
                attempts.add_metric([leaf], n)
            busy = CounterMetricFamily(PREFIX + "busy", "attempts that returned a BUSY status",
                                       labels=["operand"])
            for operand, n in self._busy_by_operand.items():
                busy.add_metric([operand], n)
            scalars = [
                CounterMetricFamily(PREFIX + "retries", "attempts with attempt > 1",
                                    value=self._retries),
                CounterMetricFamily(PREFIX + "giveups", "BUSY handed back to the caller",
                                    value=self._giveups),
                CounterMetricFamily(PREFIX + "zero_step_activations",
                                    "VP.ENTERs on which the zero-step filter fired",
                                    value=self._zero_step),
            ]
            histogram = self._histogram()
            retry_max = GaugeMetricFamily(PREFIX + "retry_max", "current retry budget",
                                          value=self._retry_max)
            zero_step = GaugeMetricFamily(PREFIX + "zero_step_enabled",
                                          "1 when zero-step detection is on",
                                          value=int(self._zero_step_enabled))
        yield attempts
        yield busy
        yield from scalars
        yield histogram
        yield retry_max
        yield zero_step
        # Which engine build runs: the mypyc-compiled one is about 3x faster.
        yield InfoMetricFamily(PREFIX + "engine", "the simulation engine's build",
                               value={"build": "compiled" if COMPILED else "pure"})

    def _histogram(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        for bound in ATTEMPT_BUCKETS:
            buckets.append((str(float(bound)), sum(n for k, n in self._calls.items() if k <= bound)))
        total = sum(self._calls.values())
        buckets.append(("+Inf", total))
        sum_value = sum(k * n for k, n in self._calls.items())
        return HistogramMetricFamily(PREFIX + "attempts_per_call",
                                     "attempts per completed logical call",
                                     buckets=buckets, sum_value=sum_value)
