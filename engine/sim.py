"""The simulation: the clock and event heap, the records buffer, and live controls."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from heapq import heappop, heappush
from typing import Any, Final, Protocol

from engine.actor import Actor
from engine.config import LIVE_FIELDS, Config
from engine.errors import ConfigError, EngineError
from engine.guest import Layout
from engine.heap import Event, push, replace
from engine.heap import pop as heap_pop
from engine.hostlocks import Mutex, RwLock
from engine.inject import Injector, make_injector
from engine.locks import LockTable, Plan
from engine.module import host_locks, host_plans
from engine.pagebytes import fill, page_bytes
from engine.params import Timing, Workload
from engine.policies import make_policy
from engine.records import CONTROL, STALL, Record


class Scenario(Protocol):
    """What a simulation is handed: its latencies and workload, and `populate`, which
    creates its actors (engine.scenario.Scenario; tests hand in tiny inline ones)."""

    @property
    def timing(self) -> Timing: ...

    @property
    def workload(self) -> Workload: ...

    def populate(self, sim: Simulation) -> None: ...

# Compiled by mypyc, the engine keeps its events as native `Event` objects in a heap of
# its own (below), ordered by native int compares; as Python source, events are tuples in
# heapq's C heap, which is faster than any heap written in Python. One order either way.
COMPILED: Final = not __file__.endswith(".py")

# The place of a VP.ENTER record until its vCPU exits (never handed out).
_OPEN: Final[Record] = ()

class Simulation:
    """One run: a pure function of (config, scenario, seed, control timeline).

    `run_until(t_ns)` advances simulated time and returns the records that are complete,
    in start-time order; `apply(changes)` changes live fields at the current time.
    """

    def __init__(self, config: Config, scenario: Scenario) -> None:
        self.config = config
        self.scenario = scenario
        self.timing: Timing = self.scenario.timing
        self.workload: Workload = self.scenario.workload
        self.rng = random.Random(config.seed)
        self.now = 0
        # Events: (t_ns, seq, fn_or_actor, arg, code) tuples, or Events when compiled.
        self._heap: list[Any] = []
        self._seq = 0  # the next event's sequence number: ties run in scheduling order
        self._spent = False  # compiled: the heap's top is the event running now (_schedule)
        self.policy = make_policy(config.policy)
        self.retry_max = config.retry_max
        self.zero_step = config.zero_step
        self.speed = config.speed
        self.layout = Layout(self.workload, config.vcpus)
        self.locks = LockTable(config.vcpus, config.module_version == "1.5", self.layout.pages)
        self.host_locks = host_locks(config.module_version)
        self.host_plans: dict[str, Plan] = host_plans(config.module_version)
        self.pages = page_bytes(self.layout.pages)
        self.regions = page_bytes(self.layout.pages // 512 + 1)
        # Frozen mirror SPTEs (FROZEN_SPTE): a fault is installing this page or region.
        self.frozen = page_bytes(self.layout.pages)
        self.frozen_regions = page_bytes(self.layout.pages // 512 + 1)
        # 2 MB leaves (engine/huge.py): a byte per region; the page bytes of a blocked one
        # as they were before its BLOCK, for DEMOTE to give its 512 children back.
        self.huge = page_bytes(self.layout.pages // 512 + 1)
        self.huge_saved: dict[int, bytes] = {}
        self.huge_leaves = 0  # 2 MB leaves mapped: while none are, zaps take the plain path
        # Pages a 2M ACCEPT has zeroed so far, by region (the entry's accept counter).
        self.accept_progress: dict[int, int] = {}
        # The TD epoch at each blocked page's TDH.MEM.RANGE.BLOCK (for TLB tracking).
        self.block_epoch: dict[int, int] = {}
        # TD attribute SEPT_VE_DISABLE: a PENDING-page access exits instead of a #VE.
        self.sept_ve_disable: bool = bool(getattr(scenario, "sept_ve_disable", False))
        self.vm_dead = False
        self.memslots: list[Any] = []  # engine.script.Memslot actors
        self._stalls: set[str] = set()  # actors a `stall` record was written for
        self.shared_attr = page_bytes(self.layout.pages)
        self.mmu_lock = RwLock()
        self.vmm_mutex = Mutex()
        self.td_epoch = 0
        self.no_entry = 0
        self.parked: list[Any] = []
        self.invalidations: list[tuple[int, int]] = []
        self.shared_ranges: list[tuple[int, int]] = []
        self.stats = {"kvm_bugs": 0, "hp_timeouts": 0, "synthetic_exits": 0,
                      "no_entry_ns": 0, "leaked_pages": 0, "vm_dead": 0, "stalls": 0,
                      "ioctls": 0, "ioctl_errors": 0}
        self.stats.update({"injected_busy": 0, "ve_not_accepted": 0, "ve_skipped": 0,
                           "attribute_changes": 0})  # engine.inject, guestrun, attributes
        # Records not yet handed out. A VP.ENTER record's place is held from the entry
        # (its start) and filled at the exit, when its duration and status are known.
        self._out: list[Record] = []
        # emit(record): append to the buffer. A bound list.append, not a method: it runs
        # once per record.
        self.emit: Callable[[Record], None] = self._out.append
        # vcpu index -> absolute index in the stream of its open VP.ENTER record, or -1.
        self._open_at: list[int] = [-1] * config.vcpus
        self._open = 0  # how many are open
        self._base = 0  # absolute index of _out[0]
        self.seq = 0
        self.vcpus: list[Any] = []
        self.host_actors: list[Any] = []
        self.prefaults: list[Any] = []  # engine.prefault.Prefault actors (they hold records)
        self.injector: Injector | None = make_injector(self)  # BUSY injection, off: None
        self.scenario.populate(self)

    # -- the clock -------------------------------------------------------------------
    def at(self, t_ns: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Call fn(arg) at simulated time t_ns (after everything already due then)."""
        seq = self._seq
        self._seq = seq + 1
        if COMPILED:
            self._schedule(Event(t_ns, seq, fn, arg, -1))
        else:
            heappush(self._heap, (t_ns, seq, fn, arg, -1))

    def post(self, t_ns: int, actor: Actor, code: int, arg: Any = None) -> None:
        """Call actor.dispatch(code, arg) at t_ns; ordered with `at`'s events."""
        seq = self._seq
        self._seq = seq + 1
        if COMPILED:
            self._schedule(Event(t_ns, seq, actor, arg, code))
        else:
            heappush(self._heap, (t_ns, seq, actor, arg, code))

    def _schedule(self, event: Event) -> None:
        """Compiled only. While an event runs it stays at the top of the heap, spent: the
        first event it schedules takes its place, one sift instead of a pop and a push.
        Events have unique (t_ns, seq) keys, so the order of popping is the same."""
        if self._spent:
            self._spent = False
            replace(self._heap, event)
        else:
            push(self._heap, event)

    def run_until(self, t_ns: int) -> list[Record]:
        """Process every event due at or before t_ns; return the complete records."""
        heap = self._heap
        # An event is (t_ns, seq, fn, arg, -1) from `at` or (t_ns, seq, actor, arg, code)
        # from `post` (an Event with those fields when compiled); seq is unique, so
        # comparing never reaches the third item.
        actor: Actor
        if COMPILED:
            while heap:
                event: Event = heap[0]
                if event.t_ns > t_ns:
                    break
                self._spent = True
                self.now = event.t_ns
                code = event.code
                if code < 0:
                    event.target(event.arg)
                else:
                    actor = event.target
                    actor.dispatch(code, event.arg)
                if self._spent:  # it scheduled nothing
                    self._spent = False
                    heap_pop(heap)
        else:
            pop = heappop
            while heap and heap[0][0] <= t_ns:
                t, _, fn, arg, code = pop(heap)
                self.now = t
                if code < 0:
                    fn(arg)
                else:
                    fn.dispatch(code, arg)
        if not heap:
            self._idle_stall()
        if t_ns > self.now:
            self.now = t_ns
        return self.drain()

    def finish(self) -> list[Record]:
        """Close the records still open (vCPUs in the guest) and hand out the rest."""
        for vcpu in self.vcpus:
            vcpu.close_at_end()
        for prefault in self.prefaults:
            prefault.close_at_end()
        return self.drain()

    # -- records ---------------------------------------------------------------------
    def open_record(self, vcpu: int) -> None:
        """Hold the place of `vcpu`'s VP.ENTER record, which starts now."""
        self._open_at[vcpu] = self._base + len(self._out)
        self._open += 1
        self._out.append(_OPEN)

    def add_record_slot(self) -> int:
        """A place for one more actor that holds records open (a prefault's fault path,
        beside the vCPUs'); returns its index for open_record/close_record."""
        self._open_at.append(-1)
        return len(self._open_at) - 1

    def close_record(self, vcpu: int, record: Record) -> None:
        """Fill the place that open_record(vcpu) held."""
        at = self._open_at[vcpu]
        self._open_at[vcpu] = -1
        self._open -= 1
        self._out[at - self._base] = record

    def drain(self) -> list[Record]:
        """Hand out the records before the earliest still-open one, numbering them."""
        out = self._out
        if self._open:
            cut = min(at for at in self._open_at if at >= 0) - self._base
            done = out[:cut]
            del out[:cut]
        else:
            done = out[:]
            out.clear()
        self._base += len(done)
        self.seq += len(done)
        return done

    # -- live controls ---------------------------------------------------------------
    def apply(self, changes: dict[str, Any]) -> None:
        """Change live fields now, and record a `control` event naming them."""
        bad = [k for k in changes if k not in LIVE_FIELDS]
        if bad:
            raise ConfigError(bad[0], f"not a live field; live fields: {', '.join(LIVE_FIELDS)}")
        self.config = self.config.with_changes(changes)
        self.policy = make_policy(self.config.policy)
        self.retry_max = self.config.retry_max
        self.zero_step = self.config.zero_step
        self.speed = self.config.speed
        for slot in self.memslots:  # a fault asleep on a stalled deletion looks again
            slot.wake_all()
        if self.policy.serialise_sept is False and self.vmm_mutex.queue:
            while self.vmm_mutex.queue:
                self.vmm_mutex.release()
        ordered = {k: changes[k] for k in sorted(changes)}
        self.emit((self.now, 0, CONTROL, "user", None, None, None, None, None, ordered))

    # -- helpers for actors ----------------------------------------------------------
    def unblock_entry(self) -> None:
        self.no_entry -= 1
        if self.no_entry:
            return
        parked, self.parked = self.parked, []
        for vcpu in parked:
            self.stats["no_entry_ns"] += self.now - vcpu.parked_at
            vcpu.enter(None)

    def kill_vm(self) -> None:
        """kvm_vm_dead: KVM_REQ_VM_DEAD to every vCPU; none enters the guest again."""
        self.vm_dead = True
        self.stats["vm_dead"] = 1
        for vcpu in self.vcpus:
            vcpu.kick()
        for slot in self.memslots:
            slot.wake_all()

    def stall(self, waiter: str, waits_on: list[str], why: str) -> None:
        """Write a `stall` record, once per waiter: it cannot make progress, and neither
        can what it waits on. The run goes on to its end."""
        if waiter in self._stalls:
            return
        self._stalls.add(waiter)
        self.stats["stalls"] += 1
        self.emit((self.now, 0, STALL, waiter, None, None, None, None, None,
                   {"waits_on": waits_on, "why": why}))

    def _idle_stall(self) -> None:
        """No event is left, yet some actor waits for something: nothing can wake it."""
        waiting = [v.name for v in self.parked]
        waiting += [v.name for v in self.vcpus if v.in_fault and not v.done]
        if waiting or self.mmu_lock.queue or self.vmm_mutex.queue:
            holder = "zap path (no-entry flag)" if self.parked else "mmu_lock/vmm mutex"
            for name in waiting or ["host"]:
                self.stall(name, [holder], "no event left that could wake it")

    def convert_to_private(self, gpa: int) -> None:
        _convert_to_private(self, gpa)

    def invalidating(self, gpa: int) -> bool:
        """True while an invalidation window covers `gpa`: its faults must be retried."""
        for lo, hi in self.invalidations:
            if lo <= gpa < hi:
                return True
        return False


def replay(config: Config, timeline: list[tuple[int, dict[str, Any]]], end_ns: int,
           scenario: Scenario, slice_ns: int = 200_000,
           finish: bool = True) -> Iterator[Record]:
    """Regenerate a run's records from its recipe: config, control timeline, end time.

    With `finish` False the records still open at `end_ns` (vCPUs in the guest, and every
    record after the earliest of them) are left out: exactly what a live run that reached
    `end_ns` has handed out so far.
    """
    sim = Simulation(config, scenario)
    for t_ns, changes in sorted(timeline, key=lambda item: item[0]):
        if t_ns > end_ns:
            raise EngineError(f"control at {t_ns} ns is after the run's end {end_ns} ns")
        yield from _advance(sim, t_ns, slice_ns)
        sim.apply(changes)
    yield from _advance(sim, end_ns, slice_ns)
    if finish:
        yield from sim.finish()


def _advance(sim: Simulation, t_ns: int, slice_ns: int) -> Iterator[Record]:
    while sim.now + slice_ns < t_ns:
        yield from sim.run_until(sim.now + slice_ns)
    yield from sim.run_until(t_ns)


def _convert_to_private(sim: Simulation, gpa: int) -> None:
    """Userspace converts the shared range holding `gpa` to private."""
    for lo, hi in sim.shared_ranges:
        if lo <= gpa < hi:
            fill(sim.shared_attr, lo, hi, 0)
            return
    sim.shared_attr[gpa] = 0
