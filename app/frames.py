"""Frames: what changed in a run's tally during one tick, as the wire's `frame` message."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypeVar

from app.schema import Frame, Totals
from engine.status import LEAVES, OPERANDS
from engine.summary import Tally

K = TypeVar("K")


@dataclass
class Snapshot:
    """A copy of a Tally's counts, cheap to take ten times a second (the dicts are tiny)."""

    events: int = 0
    attempts: int = 0
    busy: int = 0
    retries: int = 0
    giveups: int = 0
    zero_step_activations: int = 0
    busy_by_operand: dict[str, int] = field(default_factory=dict)
    by_leaf: dict[str, list[int]] = field(default_factory=dict)
    calls_by_attempts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, tally: Tally) -> Snapshot:
        return cls(tally.events, tally.attempts, tally.busy, tally.retries, tally.giveups,
                   tally.zero_step_activations, dict(tally.busy_by_operand),
                   {leaf: list(c) for leaf, c in tally.by_leaf.items()},
                   dict(tally.calls_by_attempts))


def difference(now: Snapshot, before: Snapshot) -> Tally:
    """The counts added between two snapshots, as a Tally (what metrics take)."""
    part = Tally()
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
    return part


def _minus(now: dict[K, int], before: dict[K, int]) -> dict[K, int]:
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}


def frame(run_id: str, seq: int, t0_ns: int, t_ns: int, part: Tally, total: Tally,
          lagging: bool, retry_max: int) -> Frame:
    """The `frame` message for one tick: counts within it, and the run's totals."""
    return Frame(
        run_id=run_id, seq=seq, t0_ns=t0_ns, t_ns=t_ns,
        attempts=part.attempts, retries=part.retries, giveups=part.giveups,
        busy={op: part.busy_by_operand.get(op, 0) for op in OPERANDS},
        busy_by_leaf={leaf: part.by_leaf[leaf][1] if leaf in part.by_leaf else 0
                      for leaf in LEAVES},
        zero_step_activations=part.zero_step_activations,
        calls_by_attempts={str(k): v for k, v in sorted(part.calls_by_attempts.items())},
        lagging=lagging, retry_max=retry_max,
        totals=Totals(events=total.events, attempts=total.attempts, busy=total.busy,
                      retries=total.retries, giveups=total.giveups,
                      zero_step_activations=total.zero_step_activations),
        sent_at=round(time.time(), 4),
    )
