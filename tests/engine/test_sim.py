"""The event heap: events run in (time, scheduling order), whichever heap is in use."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.heap import Event
from engine.heap import pop as _pop
from engine.heap import push as _push
from engine.heap import replace as _replace


@given(st.lists(st.tuples(st.sampled_from(("push", "pop", "replace")), st.integers(0, 5)),
                max_size=200))
def test_compiled_heap_pops_in_the_same_order_as_heapq(ops: list[tuple[str, int]]) -> None:
    """The compiled engine's own heap of Events and heapq's of tuples agree on every
    push/pop/replace sequence, ties at one time included (the engine's records depend on
    that order)."""
    ours: list[Event] = []
    theirs: list[tuple[int, int]] = []
    for seq, (op, t) in enumerate(ops):
        if op == "push" or not ours:
            _push(ours, Event(t, seq, None, None, -1))
            heapq.heappush(theirs, (t, seq))
        elif op == "replace":
            _replace(ours, Event(t, seq, None, None, -1))
            heapq.heapreplace(theirs, (t, seq))
        else:
            event = _pop(ours)
            assert (event.t_ns, event.seq) == heapq.heappop(theirs)
        assert [(e.t_ns, e.seq) for e in ours[:1]] == theirs[:1]
    while theirs:
        event = _pop(ours)
        assert (event.t_ns, event.seq) == heapq.heappop(theirs)
    assert ours == []


def test_posted_and_called_events_share_one_order() -> None:
    """`post` (actor, code) events and `at` (callable) events at one time run in the order
    they were scheduled; an unknown code is a broken invariant, not a silent no-op."""
    from engine.config import Config
    from engine.errors import InvariantError
    from engine.scenario import builtin_scenario
    from engine.sim import Simulation
    from engine.vcpu import ENTER

    sim = Simulation(Config(scenario="boot", vcpus=1), builtin_scenario("boot"))
    sim._heap.clear()  # only this test's events
    vcpu = sim.vcpus[0]
    seen: list[tuple[str, bool]] = []
    sim.at(500, lambda _: seen.append(("at, scheduled before", vcpu.entering)))
    sim.post(500, vcpu, ENTER)
    sim.at(500, lambda _: seen.append(("at, scheduled after", vcpu.entering)))
    sim.run_until(499)
    assert seen == []
    sim.run_until(500)
    assert seen == [("at, scheduled before", False), ("at, scheduled after", True)]
    with pytest.raises(InvariantError, match="no event 99"):
        vcpu.dispatch(99, None)


def test_an_actor_without_a_dispatch_of_its_own_is_a_broken_invariant() -> None:
    """An event posted to an actor that does not handle events fails loudly, by name."""
    from engine.actor import Actor
    from engine.errors import InvariantError

    with pytest.raises(InvariantError, match="Actor was posted event 3"):
        Actor().dispatch(3, None)
