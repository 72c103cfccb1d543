"""Counting records: the run summary (CONTRACT.md "Summary") and per-frame tallies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.records import ERROR, GIVEUP, SEAMCALL, SUCCESS, TDCALL, ZERO_STEP, Record
from engine.status import OPERANDS

# A leaf's counts: attempts, busy, retries, giveups, then its BUSY by operand (metrics).
BUSY_SLOTS: dict[str, int] = {op: 4 + i for i, op in enumerate(OPERANDS)}
LEAF_COUNTS = 4 + len(OPERANDS)


class Tally:
    """Counts of attempts, BUSY, retries and give-ups, by operand and by leaf.

    `add` is on the live path (every record passes through it once), so it works on
    plain dicts and ints.
    """

    __slots__ = ("events", "attempts", "busy", "retries", "giveups", "zero_step_activations",
                 "busy_by_operand", "by_leaf", "calls_by_attempts", "end_ns")

    def __init__(self) -> None:
        self.events = 0
        self.attempts = 0
        self.busy = 0
        self.retries = 0
        self.giveups = 0
        self.zero_step_activations = 0
        self.busy_by_operand: dict[str, int] = {}
        # leaf -> [attempts, busy, retries, giveups, then BUSY by operand in OPERANDS order]
        self.by_leaf: dict[str, list[int]] = {}
        # completed logical calls by their number of attempts
        self.calls_by_attempts: dict[int, int] = {}
        self.end_ns = 0

    def add(self, records: Iterable[Record]) -> None:
        # Typed locals: compiled, each costs a type check and then strings compare and
        # ints add natively. The outcome strings are the records module's constants.
        # Calls are counted by attempts in a list first (a dict costs a boxed key per
        # record) and folded into calls_by_attempts once per batch.
        by_leaf = self.by_leaf
        by_operand = self.busy_by_operand
        calls = [0] * 18  # by attempts: 0..17 covers the default retry_max (16) + 1
        events = attempts = busy = retries = giveups = activations = 0
        end_ns = self.end_ns
        for rec in records:
            events += 1
            kind: str = rec[2]
            if kind == SEAMCALL or kind == TDCALL:
                attempts += 1
                leaf: str = rec[4]
                counts = by_leaf.get(leaf)
                if counts is None:
                    counts = by_leaf[leaf] = [0] * LEAF_COUNTS
                n: int = counts[0]
                counts[0] = n + 1
                attempt: int = rec[7]
                if attempt > 1:
                    retries += 1
                    n = counts[2]
                    counts[2] = n + 1
                outcome: str = rec[8]
                ends_call = True
                if outcome != SUCCESS and outcome != ERROR:
                    busy += 1
                    n = counts[1]
                    counts[1] = n + 1
                    operand: str = rec[6]
                    n = by_operand.get(operand, 0)
                    by_operand[operand] = n + 1
                    slot: int = BUSY_SLOTS[operand]
                    n = counts[slot]
                    counts[slot] = n + 1
                    if outcome == GIVEUP:
                        giveups += 1
                        n = counts[3]
                        counts[3] = n + 1
                    else:
                        ends_call = False  # a BUSY that is retried: the call goes on
                if ends_call:
                    while attempt >= len(calls):
                        calls.append(0)
                    n = calls[attempt]
                    calls[attempt] = n + 1
            elif kind == ZERO_STEP:
                activations += 1
            t_ns: int = rec[0]
            dur_ns: int = rec[1]
            end = t_ns + dur_ns
            if end > end_ns:
                end_ns = end
        hist = self.calls_by_attempts
        for attempt, n in enumerate(calls):
            if n:
                hist[attempt] = hist.get(attempt, 0) + n
        self.end_ns = end_ns
        self.events += events
        self.attempts += attempts
        self.busy += busy
        self.retries += retries
        self.giveups += giveups
        self.zero_step_activations += activations

    def counts(self) -> dict[str, Any]:
        """The contract's counting fields (no config, no sim_ns)."""
        return {
            "events": self.events,
            "attempts": self.attempts,
            "busy": self.busy,
            "retries": self.retries,
            "giveups": self.giveups,
            "zero_step_activations": self.zero_step_activations,
            "busy_by_operand": {op: self.busy_by_operand.get(op, 0) for op in OPERANDS},
            "by_leaf": {
                leaf: {"attempts": c[0], "busy": c[1], "retries": c[2], "giveups": c[3]}
                for leaf, c in sorted(self.by_leaf.items())
            },
            "attempts_per_call": {str(k): v for k, v in sorted(self.calls_by_attempts.items())},
        }


def summary(config: dict[str, Any], sim_ns: int, tally: Tally,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary object of CONTRACT.md, with `extra` figures appended."""
    out: dict[str, Any] = {"config": config, "sim_ns": sim_ns}
    out.update(tally.counts())
    if extra:
        out.update(extra)
    return out
