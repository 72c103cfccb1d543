"""The event heap: events run in (time, scheduling order), whichever heap is in use."""

from __future__ import annotations

import heapq

from hypothesis import given
from hypothesis import strategies as st

from engine.sim import _pop, _push


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=200))
def test_compiled_heap_pops_in_the_same_order_as_heapq(ops: list[tuple[bool, int]]) -> None:
    """The compiled engine's own heap and heapq agree on every push/pop sequence,
    ties at one time included (the engine's records depend on that order)."""
    ours: list[tuple[object, ...]] = []
    theirs: list[tuple[object, ...]] = []
    for seq, (is_push, t) in enumerate(ops):
        if is_push or not ours:
            event = (t, seq, None, None)
            _push(ours, event)
            heapq.heappush(theirs, event)
        else:
            assert _pop(ours) == heapq.heappop(theirs)
    while theirs:
        assert _pop(ours) == heapq.heappop(theirs)
    assert ours == []
