"""The compiled engine's event heap: native Events ordered by (t_ns, seq).

Compiled by mypyc, the engine keeps its events as native `Event` objects in this heap,
ordered by native int compares; as Python source it uses tuples in heapq's C heap
instead (engine.sim), which is faster than any heap written in Python. One order either
way (tests/engine/test_sim.py checks it against heapq).
"""

from __future__ import annotations

from typing import Any


class Event:
    """An event of the compiled engine's heap: `target(arg)` when `code` < 0, else
    `target.dispatch(code, arg)`, at `t_ns`; `seq` orders events at one time."""

    __slots__ = ("t_ns", "seq", "target", "arg", "code")

    def __init__(self, t_ns: int, seq: int, target: Any, arg: Any, code: int) -> None:
        self.t_ns = t_ns
        self.seq = seq
        self.target = target
        self.arg = arg
        self.code = code


def _sift_up(heap: list[Event], pos: int, item: Event) -> None:
    t_ns = item.t_ns
    seq = item.seq
    while pos > 0:
        up = (pos - 1) >> 1
        parent = heap[up]
        # (t_ns, seq) of item < parent's, spelt out: compiled, two native compares
        if parent.t_ns < t_ns or (parent.t_ns == t_ns and parent.seq < seq):
            break
        heap[pos] = parent
        pos = up
    heap[pos] = item


def push(heap: list[Event], item: Event) -> None:
    """heapq.heappush for the compiled engine."""
    heap.append(item)
    _sift_up(heap, len(heap) - 1, item)


def replace(heap: list[Event], item: Event) -> None:
    """heapq.heapreplace for the compiled engine, without returning the old top (the same
    sift as heapq: the hole goes down to a leaf along the earlier children, then `item`
    goes up from there)."""
    end = len(heap)
    pos = 0
    child = 1
    while child < end:
        node = heap[child]
        right = child + 1
        if right < end:
            other = heap[right]
            if other.t_ns < node.t_ns or (other.t_ns == node.t_ns and other.seq < node.seq):
                child = right
                node = other
        heap[pos] = node
        pos = child
        child = 2 * pos + 1
    _sift_up(heap, pos, item)


def pop(heap: list[Event]) -> Event:
    """heapq.heappop for the compiled engine."""
    last = heap.pop()
    if not heap:
        return last
    top = heap[0]
    replace(heap, last)
    return top
