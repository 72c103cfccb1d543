"""KVM_PRE_FAULT_MEMORY: userspace maps a GPA range ahead of the guest, through the fault path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from engine.errors import InvariantError
from engine.fault import (
    ATTEMPT,
    BUSY_DONE,
    CALL_DONE,
    DELETED,
    FAULT_WORK,
    INVALID,
    USERSPACE,
    WALK,
    EptViolationHandler,
)
from engine.records import BUSY, IOCTL

if TYPE_CHECKING:
    from engine.script import Checker
    from engine.sim import Simulation

PRE_FAULT: Final = "KVM_PRE_FAULT_MEMORY"
DEFAULT_RETRY_US: Final = 10
# Results that userspace answers by calling again after `retry_us` (the slot is being
# deleted, or is gone until it is recreated).
RETRIED: Final = ("EAGAIN", "EFAULT")


@dataclass(frozen=True)
class PrefaultSpec:
    """A `[[prefault]]` table: the page range, when userspace calls, its retry delay."""

    lo: int
    hi: int
    times_ns: tuple[int, ...]
    retry_ns: int = DEFAULT_RETRY_US * 1000


def parse_prefault(t: dict[str, Any], path: str, check: Checker, span: Any) -> PrefaultSpec | None:
    """`[[prefault]]`: `gpa` (+ `pages`), `at_us` (one time or a list), `retry_us`."""
    times = check.times_ns(t, "at_us", path)
    retry = check.integer(t, "retry_us", path, 1, 10_000_000, DEFAULT_RETRY_US)
    return PrefaultSpec(span[0], span[1], times, retry * 1000) if span and times else None


class Prefault(EptViolationHandler):
    """A userspace thread calling KVM_PRE_FAULT_MEMORY on a range (kvm_vcpu_pre_fault_memory
    in virt/kvm/kvm_main.c -> kvm_arch_vcpu_pre_fault_memory -> kvm_tdp_map_page in
    arch/x86/kvm/mmu/mmu.c). Each page runs the same fault as a vCPU's EPT violation
    (mmu_lock for read, frozen SPTEs, TDH.MEM.SEPT.ADD / TDH.MEM.PAGE.AUG under the
    policy's BUSY handling); kvm_tdp_map_page runs it again on RET_PF_RETRY under every
    policy, until a signal or a dead VM. A TD allows it once finalized (tdx_td_finalize
    sets pre_fault_allowed).

    On an INVALID memslot kvm_mmu_faultin_pfn returns -EAGAIN to a prefault from 6.18 on
    (commit 3ccbf6f47098; policies with `breaks_on_invalid_memslot`); before that (`upstream_6_17`) it returned
    RET_PF_RETRY and the loop waited on the deletion's SRCU grace period while the
    deletion waited on it: a stall. A slot that is gone gives -EFAULT (no memslot for a
    private GPA). The ioctl returns 0 once at least one page was mapped, with the range
    advanced; userspace calls again at once while pages are left, and `retry_ns` after
    EAGAIN or EFAULT. Every return is an `ioctl` record.
    """

    def __init__(self, sim: Simulation, index: int, spec: PrefaultSpec) -> None:
        super().__init__(sim, sim.add_record_slot())
        self.name = f"prefault{index}"
        self.spec = spec
        self.active = False  # an ioctl (or userspace's retry of one) is under way
        self.queued = 0  # calls due while one was under way: they follow it
        self.next_page = spec.lo
        self.first_page = spec.lo
        self.start_ns = 0
        sim.prefaults.append(self)
        for t_ns in spec.times_ns:
            sim.at(t_ns, self._start)

    def dispatch(self, code: int, arg: Any) -> None:
        if code == FAULT_WORK:
            self._fault_work(arg)
        elif code == CALL_DONE:
            self._call_done(arg)
        elif code == ATTEMPT:
            self._attempt(arg)
        elif code == BUSY_DONE:
            self._busy_done(arg)
        elif code == WALK:
            self._walk()
        else:
            raise InvariantError(f"{self.name}: no event {code}")

    def _start(self, _: Any) -> None:
        """Userspace's KVM_PRE_FAULT_MEMORY over the whole range."""
        if self.active:
            self.queued += 1
            return
        self.active = True
        self.next_page = self.spec.lo
        self._ioctl(None)

    def _ioctl(self, _: Any) -> None:
        self.start_ns = self.sim.now
        self.first_page = self.next_page
        self._page()

    def _page(self) -> None:
        """kvm_arch_vcpu_pre_fault_memory for the next page, or the ioctl's return."""
        sim = self.sim
        if sim.vm_dead:
            return self._return("EIO")
        gpa = self.next_page
        if gpa >= self.spec.hi:
            return self._return("0")
        if sim.shared_attr[gpa]:  # a shared GPA: no S-EPT mapping to make here
            self.next_page = gpa + 1
            return self._page()
        self._fault(gpa)

    def _fault_work(self, _: Any) -> None:
        """kvm_mmu_faultin_pfn's memslot checks for a prefault, then the shared fault."""
        sim = self.sim
        gpa = self.fault_gpa
        for slot in sim.memslots:
            if slot.lo <= gpa < slot.hi and slot.state:
                if slot.state == DELETED:
                    self._fault_end(USERSPACE)
                    return self._return("EFAULT")
                if slot.state == INVALID and sim.policy.breaks_on_invalid_memslot:
                    self._fault_end(USERSPACE)
                    return self._return("EAGAIN")
        super()._fault_work(_)

    def retries_locally(self) -> bool:
        """kvm_tdp_map_page's own loop: RET_PF_RETRY runs the fault again under every
        policy, unless a signal is pending or the VM is dead."""
        return not self.signal_pending and not self.sim.vm_dead

    def enter(self, _: Any) -> None:
        """kvm_tdp_map_page returned: the page is mapped (on to the next), or its loop
        left for a signal (-EINTR) or a dead VM (-EIO)."""
        if self.sim.vm_dead:
            return self._return("EIO")
        if self.signal_pending:
            self.signal_pending = False
            return self._return("EINTR")
        self.next_page = self.fault_gpa + 1
        self._page()

    def _return(self, error: str) -> None:
        """The ioctl returns: 0 if it mapped at least one page (the range advanced),
        else the error; userspace decides what comes next."""
        sim = self.sim
        mapped = self.next_page - self.first_page
        result = "0" if mapped else error
        sim.stats["ioctls"] += 1
        if result != "0":
            sim.stats["ioctl_errors"] += 1
        sim.emit((sim.now, 0, IOCTL, self.name, None, None, None, None, None,
                  {"ioctl": PRE_FAULT, "result": result, "gpa": hex(self.first_page << 12),
                   "pages": self.spec.hi - self.first_page, "mapped": mapped}))
        if result == "0" and self.next_page < self.spec.hi:
            sim.at(sim.now, self._ioctl)  # the rest of the range, at once
        elif result in RETRIED:
            sim.at(sim.now + self.spec.retry_ns, self._ioctl)
        else:
            self.active = False
            if self.queued:
                self.queued -= 1
                sim.at(sim.now, self._start)

    def close_at_end(self) -> None:
        """The run ends inside a fault: its held BUSY record would have been retried."""
        if self.held is not None:
            self._resolve(BUSY)
