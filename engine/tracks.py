"""Trace tracks shared by the Chrome and Perfetto writers: thread ids and BUSY windows."""

from __future__ import annotations

from collections.abc import Iterator

from engine.status import OPERANDS

COUNTER_WINDOW_NS = 100_000  # one BUSY counter sample per operand per 100 us
_TID_BASES = (("vcpu", 1), ("zap", 10_001), ("build", 20_001), ("invalidate", 30_001),
              ("signal", 40_001), ("memslot", 50_001))
_OTHER_TID = 90_000


class ThreadIds:
    """A track per actor: vcpuN, zapN, ... each in their own range (vcpu3 is tid 4, so the
    viewer sorts vCPUs in order); any other actor (`user`, say) the next id from 90000."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def new(self, actor: str) -> int | None:
        """The tid of `actor` when it is seen for the first time, else None."""
        if actor in self._ids:
            return None
        tid = _known_tid(actor)
        if tid is None:
            tid = _OTHER_TID + sum(1 for t in self._ids.values() if t >= _OTHER_TID)
        self._ids[actor] = tid
        return tid

    def __getitem__(self, actor: str) -> int:
        return self._ids[actor]


def _known_tid(actor: str) -> int | None:
    for prefix, base in _TID_BASES:
        if actor.startswith(prefix) and actor[len(prefix):].isdigit():
            return base + int(actor[len(prefix):])
    return None


class BusyWindows:
    """BUSY counts per operand in fixed windows of simulated time.

    Every sample names every operand, zeros included: a viewer holds a counter's last
    value until the next sample, so a left-out operand would show a stale count.
    """

    __slots__ = ("start_ns", "counts", "window_ns")

    def __init__(self, window_ns: int = COUNTER_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self.start_ns = 0
        self.counts = dict.fromkeys(OPERANDS, 0)

    def passed(self, t_ns: int) -> Iterator[tuple[int, dict[str, int]]]:
        """The (window start, counts) of every window that ends at or before `t_ns`."""
        while t_ns >= self.start_ns + self.window_ns:
            yield self.start_ns, self.counts
            self.start_ns += self.window_ns
            self.counts = dict.fromkeys(OPERANDS, 0)

    def count(self, operand: str) -> None:
        self.counts[operand] = self.counts.get(operand, 0) + 1

    def last(self) -> tuple[int, dict[str, int]]:
        """The window in progress at the end of the records."""
        return self.start_ns, self.counts
