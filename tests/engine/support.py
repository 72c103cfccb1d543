"""Helpers shared by the engine tests: running configs, parsing logs, logical calls."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

from engine.config import Config
from engine.export import chunks
from engine.guest import ACCESS, HLT, IO, STOP, Op
from engine.params import Timing, Workload
from engine.run import records, run

CALL_KINDS = ("seamcall", "tdcall")


def run_log(config: Config, end_ns: int, fmt: str = "jsonl") -> tuple[dict[str, Any], str]:
    """The summary and the whole exported log text of one headless run."""
    out = io.StringIO()
    result = run(config, None, end_ns, out, fmt)
    return result, out.getvalue()


def run_records(config: Config, end_ns: int) -> list[dict[str, Any]]:
    """The parsed JSONL records of one headless run."""
    _, text = run_log(config, end_ns)
    return parse_jsonl(text)


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def export_text(config: Config, end_ns: int, fmt: str) -> str:
    """The log in `fmt` built from engine.run.records, without the summary path."""
    return "".join(chunks(fmt, records(config, None, end_ns)))


def calls_by_actor(log: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every seamcall/tdcall record, grouped by actor, in log order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in log:
        if rec["kind"] in CALL_KINDS:
            out.setdefault(rec["actor"], []).append(rec)
    return out


OWN_LOOP_LEAVES = ("TDH.VP.ENTER", "TDH.MEM.TRACK")


def logical_calls(log: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Runs of call records on one actor with attempt 1, 2, 3, ... (a logical call).

    Raises AssertionError when an attempt does not continue the previous one.
    """
    for actor, calls in calls_by_actor(log).items():
        current: list[dict[str, Any]] = []
        for rec in calls:
            if rec["attempt"] == 1:
                if current:
                    # Only KVM's own uncapped loops under `bounded` (re-entering after a
                    # BUSY TDH.VP.ENTER, v19's TRACK loop) retry as a new logical call.
                    assert current[-1]["outcome"] != "busy" or (
                        rec["leaf"] == current[-1]["leaf"] in OWN_LOOP_LEAVES), (
                        f"{actor}: a busy record (will be retried) was followed by a new "
                        f"logical call: {current[-1]} then {rec}")
                    yield current
                current = [rec]
                continue
            assert current, f"{actor}: attempt {rec['attempt']} without attempt 1: {rec}"
            prev = current[-1]
            assert rec["attempt"] == prev["attempt"] + 1 and rec["leaf"] == prev["leaf"], (
                f"{actor}: {rec} does not continue {prev}")
            assert prev["outcome"] == "busy", f"{actor}: retry after a final outcome: {prev} {rec}"
            current.append(rec)
        if current:
            yield current


def recount(log: list[dict[str, Any]]) -> dict[str, Any]:
    """The contract's summary counts recomputed from the JSONL records."""
    counts: dict[str, Any] = {"events": len(log), "attempts": 0, "busy": 0, "retries": 0,
                              "giveups": 0, "zero_step_activations": 0}
    by_operand: dict[str, int] = {}
    by_leaf: dict[str, dict[str, int]] = {}
    for rec in log:
        if rec["kind"] == "zero_step":
            counts["zero_step_activations"] += 1
        if rec["kind"] not in CALL_KINDS:
            continue
        leaf = by_leaf.setdefault(rec["leaf"], {"attempts": 0, "busy": 0, "retries": 0,
                                                "giveups": 0})
        counts["attempts"] += 1
        leaf["attempts"] += 1
        if rec["attempt"] > 1:
            counts["retries"] += 1
            leaf["retries"] += 1
        if rec["outcome"] in ("busy", "giveup"):
            counts["busy"] += 1
            leaf["busy"] += 1
            by_operand[rec["operand"]] = by_operand.get(rec["operand"], 0) + 1
        if rec["outcome"] == "giveup":
            counts["giveups"] += 1
            leaf["giveups"] += 1
    counts["busy_by_operand"] = by_operand
    counts["by_leaf"] = by_leaf
    return counts


def parse_us(text: str) -> int:
    """A Chrome-trace "%d.%03d" microsecond string as integer nanoseconds."""
    whole, _, frac = text.partition(".")
    assert len(frac) == 3 and whole.isdigit() and frac.isdigit(), f"not %d.%03d: {text!r}"
    return int(whole) * 1000 + int(frac)


class ScriptGuest:
    """A guest that runs a fixed list of operations, then stops for good."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = list(ops)

    def next_op(self) -> Op:
        if self.ops:
            return self.ops.pop(0)
        return Op(0, STOP, 0xDEAD, ())


class InlineScenario:
    """A tiny scenario for exact-log tests: scripted vCPUs and optional host actors."""

    def __init__(self, guests: list[list[Op]], timing: Timing | None = None,
                 workload: Workload | None = None, extra: Any = None) -> None:
        self.name = "inline"
        self.timing = timing or Timing()
        self.workload = workload or Workload(td_memory_mib=16)
        self.guests = guests
        self.extra = extra

    def populate(self, sim: Any) -> None:
        from engine.vcpu import Vcpu

        for i, ops in enumerate(self.guests):
            vcpu = Vcpu(sim, i, ScriptGuest(ops))
            sim.vcpus.append(vcpu)
            sim.at(0, vcpu.enter)
        if self.extra is not None:
            self.extra(sim)


def access(rip: int, *gpas: int, run_ns: int = 0, ve: bool = True) -> Op:
    return Op(run_ns, ACCESS, rip, tuple(gpas), ve)


def io_exit(rip: int, run_ns: int = 0) -> Op:
    return Op(run_ns, IO, rip, ())


def hlt(rip: int, hold_ns: int, run_ns: int = 0) -> Op:
    return Op(run_ns, HLT, rip, (), True, hold_ns)
