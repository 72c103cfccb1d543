"""Frames: what changed in a run's counts during one tick, as the wire's `frame` message."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.schema import Frame, Totals
from engine.records import BUSY, GIVEUP, Record
from engine.status import LEAVES, OPERANDS
from engine.summary import Tally

K = TypeVar("K")
OPERAND_INDEX = {name: i for i, name in enumerate(OPERANDS)}
LEAF_INDEX = {name: i for i, name in enumerate(LEAVES)}
Pairs = dict[tuple[str, str], int]  # (operand, leaf) -> BUSY records


class Counts:
    """A run's tally plus BUSY by (operand, leaf), which the summary does not keep.

    The pairs say which leaf met which lock (the page's caption); they cost one more pass
    over each slice's records, a test of the outcome per record.
    """

    __slots__ = ("tally", "pairs")

    def __init__(self) -> None:
        self.tally = Tally()
        self.pairs: Pairs = {}

    def add(self, records: list[Record]) -> None:
        self.tally.add(records)
        pairs = self.pairs
        for rec in records:
            outcome = rec[8]
            if outcome == BUSY or outcome == GIVEUP:
                key = (rec[6], rec[4])
                pairs[key] = pairs.get(key, 0) + 1


@dataclass
class Snapshot:
    """A copy of a run's counts, cheap to take at every bin edge (the dicts are tiny)."""

    events: int = 0
    attempts: int = 0
    busy: int = 0
    retries: int = 0
    giveups: int = 0
    zero_step_activations: int = 0
    busy_by_operand: dict[str, int] = field(default_factory=dict)
    by_leaf: dict[str, list[int]] = field(default_factory=dict)
    calls_by_attempts: dict[int, int] = field(default_factory=dict)
    pairs: Pairs = field(default_factory=dict)

    @classmethod
    def of(cls, counts: Counts) -> Snapshot:
        tally = counts.tally
        return cls(tally.events, tally.attempts, tally.busy, tally.retries, tally.giveups,
                   tally.zero_step_activations, dict(tally.busy_by_operand),
                   {leaf: list(c) for leaf, c in tally.by_leaf.items()},
                   dict(tally.calls_by_attempts), dict(counts.pairs))


def difference(now: Snapshot, before: Snapshot) -> Counts:
    """The counts added between two snapshots (its tally is what metrics take)."""
    out = Counts()
    part = out.tally
    part.events = now.events - before.events
    part.attempts = now.attempts - before.attempts
    part.busy = now.busy - before.busy
    part.retries = now.retries - before.retries
    part.giveups = now.giveups - before.giveups
    part.zero_step_activations = now.zero_step_activations - before.zero_step_activations
    part.busy_by_operand = _minus(now.busy_by_operand, before.busy_by_operand)
    part.calls_by_attempts = _minus(now.calls_by_attempts, before.calls_by_attempts)
    for leaf, counts in now.by_leaf.items():
        old = before.by_leaf.get(leaf, [0] * len(counts))
        delta = [a - b for a, b in zip(counts, old, strict=True)]
        if any(delta):
            part.by_leaf[leaf] = delta
    out.pairs = _minus(now.pairs, before.pairs)
    return out


def _minus(now: dict[K, int], before: dict[K, int]) -> dict[K, int]:
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}


def piece(index: int, part: Counts) -> dict[str, Any]:
    """One bin's counts (or the part of them simulated in this frame), compact for the wire:
    operands and leaves as lists in hello's order, BUSY pairs as [operand, leaf, n] indices,
    calls that got their locks as [leaf, n]."""
    tally = part.tally
    return {
        "i": index,
        "attempts": tally.attempts, "retries": tally.retries, "giveups": tally.giveups,
        "zero_step": tally.zero_step_activations,
        "busy": [tally.busy_by_operand.get(op, 0) for op in OPERANDS],
        "leaf": [tally.by_leaf[leaf][1] if leaf in tally.by_leaf else 0 for leaf in LEAVES],
        # calls that got their locks (attempts less BUSY), by leaf: the caption's holders
        "ran": [[i, counts[0] - counts[1]] for i, leaf in enumerate(LEAVES)
                if (counts := tally.by_leaf.get(leaf)) is not None and counts[0] > counts[1]],
        "pairs": sorted([OPERAND_INDEX[op], LEAF_INDEX[leaf], n]
                        for (op, leaf), n in part.pairs.items()
                        if op in OPERAND_INDEX and leaf in LEAF_INDEX),
    }


def calls_since(now: dict[int, int], mark: dict[int, int]) -> dict[str, int]:
    """Completed calls by attempts since `mark` was taken, keyed as on the wire."""
    return {str(k): v for k, v in sorted(_minus(now, mark).items())}


def frame(run_id: str, seq: int, t0_ns: int, t_ns: int, part: Counts, total: Tally,
          lagging: bool, retry_max: int, **extra: Any) -> Frame:
    """The `frame` message for one tick: counts within it, and the run's totals."""
    tally = part.tally
    return Frame(
        run_id=run_id, seq=seq, t0_ns=t0_ns, t_ns=t_ns,
        attempts=tally.attempts, retries=tally.retries, giveups=tally.giveups,
        busy={op: tally.busy_by_operand.get(op, 0) for op in OPERANDS},
        busy_by_leaf={leaf: tally.by_leaf[leaf][1] if leaf in tally.by_leaf else 0
                      for leaf in LEAVES},
        zero_step_activations=tally.zero_step_activations,
        calls_by_attempts={str(k): v for k, v in sorted(tally.calls_by_attempts.items())},
        lagging=lagging, retry_max=retry_max,
        totals=totals(total),
        sent_at=round(time.time(), 4),
        **extra,
    )


def totals(total: Tally) -> Totals:
    return Totals(events=total.events, attempts=total.attempts, busy=total.busy,
                  retries=total.retries, giveups=total.giveups,
                  zero_step_activations=total.zero_step_activations)

