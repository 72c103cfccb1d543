"""A scenario file's host actors: zaps, invalidation windows, memslot deletions, signals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.attributes import ATTRIBUTES, AttributesSpec, install_attributes
from engine.buildvcpu import InitVcpuSpec
from engine.fault import (
    ACTIVE,
    DELETED,
    INVALID,
    LEAVE_LOOP,
    RETRY,
    STALLED,
    USERSPACE,
    EptViolationHandler,
)
from engine.prefault import Prefault, PrefaultSpec
from engine.records import MEMORY_FAULT
from engine.script import (
    INVALIDATE,
    MEMSLOT,
    PAGE_SHIFT,
    SIGNAL,
    ActorSpec,
    InvalidateSpec,
    SignalSpec,
    ZapSpec,
)
from engine.zap import Zapper

if TYPE_CHECKING:
    from engine.sim import Simulation

__all__ = ["ACTIVE", "DELETED", "INVALID", "install"]


def install(sim: Simulation, actors: tuple[ActorSpec, ...]) -> None:
    """Create the actors in `sim`, numbering each kind from where the scenario left off."""
    counts = {INVALIDATE: 0, SIGNAL: 0, MEMSLOT: 0, "prefault": 0, ATTRIBUTES: 0}
    zaps = sum(1 for a in sim.host_actors if isinstance(a, Zapper))
    for spec in actors:
        if isinstance(spec, ZapSpec):
            # Zapper's rate mode starts at start_ns + interval: shift so the first is at start.
            sim.host_actors.append(Zapper(sim, zaps, spec.batch_pages, spec.every_ns,
                                          spec.start_ns - spec.every_ns, spec.times_ns,
                                          ((spec.lo, spec.hi),)))
            sim.host_actors[-1].ignores_busy = spec.demote_ignores_busy
            zaps += 1
        elif isinstance(spec, InvalidateSpec):
            windows = [(t, t + spec.duration_ns) for t in spec.times_ns]
            zapper = None
            if spec.zap:
                zapper = Zapper(sim, zaps, spec.hi - spec.lo, 0, 0, (), ((spec.lo, spec.hi),),
                                on_demand=True)
                zaps += 1
            sim.host_actors.append(Invalidation(sim, f"invalidate{counts[INVALIDATE]}",
                                                spec.lo, spec.hi, windows, zapper))
            if zapper is not None:
                sim.host_actors.append(zapper)
            counts[INVALIDATE] += 1
        elif isinstance(spec, InitVcpuSpec):
            continue  # the build's (engine.scenario populates it)
        elif isinstance(spec, PrefaultSpec):
            sim.host_actors.append(Prefault(sim, counts["prefault"], spec))
            counts["prefault"] += 1
        elif isinstance(spec, AttributesSpec):
            install_attributes(sim, spec, counts[ATTRIBUTES], zaps)
            counts[ATTRIBUTES] += 1
            zaps += 1
        elif isinstance(spec, SignalSpec):
            if spec.vcpu < len(sim.vcpus):  # a run with fewer vCPUs leaves it out
                sim.host_actors.append(Signaller(sim, counts[SIGNAL], spec))
                counts[SIGNAL] += 1
        else:
            zapper = Zapper(sim, zaps, spec.hi - spec.lo, 0, 0, (), ((spec.lo, spec.hi),),
                            on_demand=True)
            zaps += 1
            slot = Memslot(sim, f"memslot{counts[MEMSLOT]}", spec.lo, spec.hi, zapper,
                           spec.delete_ns, spec.recreate_after_ns)
            counts[MEMSLOT] += 1
            sim.host_actors.append(slot)
            sim.host_actors.append(zapper)
            sim.memslots.append(slot)


_SPINS = "retries its fault on the INVALID slot, which stays INVALID until the deletion goes on"


def _record(sim: Simulation, kind: str, name: str, lo: int, hi: int, action: str) -> None:
    sim.emit((sim.now, 0, kind, name, None, None, None, None, None,
              {"action": action, "gpa": hex(lo << PAGE_SHIFT), "pages": hi - lo}))


class Invalidation:
    """An MMU-notifier invalidation over a range (munmap, hole punch): while a window is
    open, faults on the range return RET_PF_RETRY (mmu_invalidate_retry_gfn in
    kvm_faultin_pfn), so `upstream` retries locally for the whole window and the re-entry
    policies re-enter the guest once per re-fault. `invalidate` records mark each window.
    With a `zapper`, the window's start also zaps the range's mapped pages
    (kvm_mmu_unmap_gfn_range from the notifier's invalidate_range_start)."""

    def __init__(self, sim: Simulation, name: str, lo: int, hi: int,
                 windows: list[tuple[int, int]], zapper: Zapper | None = None) -> None:
        self.sim = sim
        self.name = name
        self.range = (lo, hi)
        self.zapper = zapper
        self.zapping = False
        for open_ns, close_ns in windows:
            sim.at(open_ns, self._open)
            sim.at(close_ns, self._close)

    def _open(self, _: Any) -> None:
        self.sim.invalidations.append(self.range)
        _record(self.sim, INVALIDATE, self.name, *self.range, "start")
        if self.zapper is not None and not self.zapping:  # one zap batch at a time
            self.zapping = True
            self.zapper.zap_now(self._zapped)

    def _zapped(self) -> None:
        self.zapping = False

    def _close(self, _: Any) -> None:
        self.sim.invalidations.remove(self.range)
        _record(self.sim, INVALIDATE, self.name, *self.range, "end")


class Memslot:
    """A memslot deleted and recreated by userspace (kvm_set_memslot's delete path).

    At `delete_ns` the slot turns INVALID (kvm_invalidate_memslot): its faults return
    RET_PF_RETRY. The deletion then waits for an SRCU grace period: it goes on only once
    no vCPU is inside a fault on the slot. A policy that breaks out of its local retry on
    an INVALID slot (`upstream`, 6.18 on) re-enters the guest, as the re-entry policies
    do, and faults again until the slot is gone; one that does not keeps
    retrying inside the read side, and deletion and vCPU wait on each other forever: a
    `stall` record says so (one for each side), and the pair goes quiet: the faults wait in
    their loop with no events until a signal, a dead VM or a new policy wakes them
    (EptViolationHandler.wake_stalled), and the grace period is looked at again when one
    leaves. After the grace period the range is zapped
    (kvm_arch_flush_shadow_memslot) and the slot is gone: its faults exit to userspace,
    which re-enters the vCPU once the slot is recreated, `recreate_after_ns` after the
    deletion began (or at once when the deletion finishes later than that).
    """

    def __init__(self, sim: Simulation, name: str, lo: int, hi: int, zapper: Zapper,
                 delete_ns: int, recreate_after_ns: int) -> None:
        self.sim = sim
        self.name = name
        self.lo = lo
        self.hi = hi
        self.zapper = zapper
        self.state = ACTIVE
        self.recreate_ns = delete_ns + recreate_after_ns
        self.waiting: list[EptViolationHandler] = []  # vCPUs userspace re-enters at recreation
        self.spinning: list[EptViolationHandler] = []  # vCPUs retrying locally on INVALID
        self.stalled = False  # the grace period waits on faults that never leave
        self.polling = False  # a _grace event is due
        sim.at(delete_ns, self._delete)

    def fault(self, vcpu: EptViolationHandler) -> int:
        """What a fault on this slot returns while it is not ACTIVE."""
        sim = self.sim
        if self.state == INVALID and not sim.policy.breaks_on_invalid_memslot:
            if vcpu not in self.spinning:
                self.spinning.append(vcpu)
            if self.stalled:  # a late one joins the stall: it says so too
                self.sim.stall(vcpu.name, [self.name], _SPINS)
                vcpu.stalled_on = self
                return STALLED
            return RETRY
        if self.state == INVALID:
            # RET_PF_RETRY, and the guest is entered again: the re-entry policies always
            # do; 6.18's local retry breaks out here (commit 2bc2694fe20b, "Do not retry
            # locally when the retry is caused by invalid memslot"), so it faults again
            # at the same RIP until the slot is gone.
            return LEAVE_LOOP
        # The memslot is gone: no slot for a private GPA, KVM_EXIT_MEMORY_FAULT.
        sim.emit((sim.now, 0, MEMORY_FAULT, vcpu.name, None, None, None, None, None,
                  {"gpa": hex(vcpu.fault_gpa << PAGE_SHIFT), "action": "wait_memslot"}))
        self.waiting.append(vcpu)
        return USERSPACE

    def _delete(self, _: Any) -> None:
        self.state = INVALID
        _record(self.sim, MEMSLOT, self.name, self.lo, self.hi, "delete")
        self.polling = True
        self._grace(None)

    def _inside(self) -> list[EptViolationHandler]:
        """The vCPUs (and prefaults) inside a fault on the slot: SRCU readers."""
        faulting = [*self.sim.vcpus,
                    *(a for a in self.sim.host_actors if isinstance(a, EptViolationHandler))]
        return [v for v in faulting if v.in_fault and self.lo <= v.fault_gpa < self.hi]

    def _grace(self, _: Any) -> None:
        """synchronize_srcu: wait until no vCPU is inside a fault on the slot."""
        sim = self.sim
        inside = self._inside()
        if not inside:
            self.polling = False
            self.zapper.zap_now(self._zapped)
            return
        if all(v in self.spinning and v.retries_locally() for v in inside):
            names = [v.name for v in inside]
            sim.stall(self.name, names,
                      "memslot deletion waits for an SRCU grace period; the faults inside "
                      "it retry on the INVALID slot and never leave")
            for name in names:
                sim.stall(name, [self.name], _SPINS)
            self.stalled = True
            if all(v.stalled_on is self for v in inside):
                self.polling = False  # all asleep: left() looks again when one leaves
                return
        sim.at(sim.now + max(sim.timing.kvm_fault_ns, 1), self._grace)  # time must move

    def left(self) -> None:
        """A fault asleep on this slot's stall left its loop: look at the grace period."""
        if not self.polling and self.state == INVALID:
            self.polling = True
            self.sim.at(self.sim.now, self._grace)

    def wake_all(self) -> None:
        """The policy changed or the VM died: every fault asleep on the stall runs again
        (a policy that breaks out now leaves; a dead VM's loop ends)."""
        self.stalled = False
        for vcpu in self._inside():
            vcpu.wake_stalled()
        self.left()

    def _zapped(self) -> None:
        self.state = DELETED
        self.sim.at(max(self.sim.now, self.recreate_ns), self._recreate)

    def _recreate(self, _: Any) -> None:
        sim = self.sim
        self.state = ACTIVE
        _record(sim, MEMSLOT, self.name, self.lo, self.hi, "recreate")
        waiting, self.waiting = self.waiting, []
        for vcpu in waiting:
            sim.at(sim.now + sim.timing.memory_fault_ns, vcpu.enter)


class Signaller:
    """A signal to a vCPU thread every `every_ns`: a pending signal, and a kick out of the
    guest (the fault path's local retry leaves its loop instead of retrying)."""

    def __init__(self, sim: Simulation, index: int, spec: SignalSpec) -> None:
        self.sim = sim
        self.name = f"signal{index}"
        self.spec = spec
        self.sent = 0
        sim.at(spec.start_ns, self._send)

    def _send(self, _: Any) -> None:
        sim = self.sim
        vcpu = sim.vcpus[self.spec.vcpu]
        sim.emit((sim.now, 0, SIGNAL, self.name, None, None, None, None, None,
                  {"vcpu": vcpu.name}))
        vcpu.signal_pending = True
        vcpu.kick()
        vcpu.wake_stalled()  # a fault asleep in a stalled loop sees the signal
        self.sent += 1
        if not self.spec.count or self.sent < self.spec.count:
            sim.at(sim.now + self.spec.every_ns, self._send)
