"""Headless runs: drive a simulation to its end, count everything, optionally write the log."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from engine.config import Config
from engine.export import chunks, jsonl_batches, write
from engine.records import Record
from engine.scenario import Scenario, builtin_scenario
from engine.sim import Simulation, replay
from engine.summary import Tally, summary

SLICE_NS = 200_000  # records are handed out and counted every 200 us of simulated time


def sim_extras(sim: Simulation) -> dict[str, Any]:
    """Figures beyond the contract's counts (MODEL.md section 7)."""
    return {
        **sim.stats,
        "guest_ns_by_vcpu": {v.name: v.guest_ns for v in sim.vcpus},
        "zero_step_armed_vcpus": sum(1 for v in sim.vcpus if v.zs.armed),
    }


def records(config: Config, scenario: Scenario | None, end_ns: int,
            timeline: list[tuple[int, dict[str, Any]]] | None = None,
            on_slice: Callable[[int], None] | None = None,
            sim_out: list[Simulation] | None = None, finish: bool = True) -> Iterator[Record]:
    """Every record of a run, in order; `on_slice(now_ns)` is called as time advances."""
    scenario = scenario if scenario is not None else builtin_scenario(config.scenario)
    if timeline:
        yield from replay(config, timeline, end_ns, scenario, SLICE_NS, finish)
        return
    sim = Simulation(config, scenario)
    if sim_out is not None:
        sim_out.append(sim)
    t = 0
    while t < end_ns:
        t = min(t + SLICE_NS, end_ns)
        yield from sim.run_until(t)
        if on_slice is not None:
            on_slice(t)
    if finish:
        yield from sim.finish()


def slices(config: Config, scenario: Scenario | None, end_ns: int,
           on_slice: Callable[[int], None] | None = None,
           sim_out: list[Simulation] | None = None) -> Iterator[list[Record]]:
    """A run's records a slice at a time (the live path: no per-record generator)."""
    sim = Simulation(config, scenario if scenario is not None else builtin_scenario(config.scenario))
    if sim_out is not None:
        sim_out.append(sim)
    t = 0
    while t < end_ns:
        t = min(t + SLICE_NS, end_ns)
        yield sim.run_until(t)
        if on_slice is not None:
            on_slice(t)
    yield sim.finish()


def run(config: Config, scenario: Scenario | None, end_ns: int, out: IO[Any] | None = None,
        fmt: str = "jsonl", on_slice: Callable[[int], None] | None = None, *,
        expected_records: int | None = None, gzip: bool = False) -> dict[str, Any]:
    """Run headlessly to `end_ns`; write the log to `out` in `fmt` if given; the summary.

    `out` is a binary file (any format; `gzip` compresses) or a text one (text formats).
    """
    tally = Tally()
    holder: list[Simulation] = []
    counted = _counted(slices(config, scenario, end_ns, on_slice, holder), tally)
    if isinstance(out, io.TextIOBase):
        # JSONL is formatted a slice at a time; the other formats take records one by one.
        pieces = (jsonl_batches(counted) if fmt == "jsonl" else
                  chunks(fmt, _flat(counted), config.to_dict(), expected_records))
        for piece in pieces:
            out.write(piece)
    elif out is not None:
        write(out, fmt, counted, config.to_dict(), expected_records, gzip)
    else:
        for _ in counted:
            pass
    return summary(config.to_dict(), end_ns, tally, sim_extras(holder[0]))


def _counted(batches: Iterable[list[Record]], tally: Tally) -> Iterator[list[Record]]:
    for batch in batches:
        tally.add(batch)
        yield batch


def _flat(batches: Iterable[list[Record]]) -> Iterator[Record]:
    for batch in batches:
        yield from batch
