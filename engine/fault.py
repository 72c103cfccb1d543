"""KVM's EPT-violation handler for a vCPU: the fault, its SEAMCALLs and their retry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.actor import Actor
from engine.locks import Plan
from engine.pagebytes import PENDING, UNMAPPED
from engine.policies import GIVE_UP
from engine.records import BUSY, GIVEUP, MEMORY_FAULT, SEAMCALL, SUCCESS

if TYPE_CHECKING:
    from engine.sim import Simulation

SEPT_ADD: Final = "TDH.MEM.SEPT.ADD"
AUG: Final = "TDH.MEM.PAGE.AUG"

# The handler's events, posted as (vcpu, code, arg) and run by the vCPU's dispatch.
FAULT_WORK: Final = 6
CALL_DONE: Final = 7
ATTEMPT: Final = 8


class EptViolationHandler(Actor):
    """The host side of a vCPU's EPT-violation exit (tdx_handle_ept_violation in
    arch/x86/kvm/vmx/tdx.c, kvm_tdp_mmu_map in mmu/tdp_mmu.c). The vCPU's run loop
    (engine.vcpu.Vcpu) derives from it and provides `enter`."""

    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.i = index
        self.name = f"vcpu{index}"
        self.signal_pending = False
        self.memory_fault_ignore = 0
        self.memory_faults = 0
        # The fault path's current logical call.
        self.fault_gpa = 0
        self.leaf = ""
        self.attempt = 1
        self.holds_vmm = False
        timing = sim.timing
        self.seamcall_ns = timing.seamcall_ns
        self.kvm_fault_ns = timing.kvm_fault_ns
        self.sept_add_ns = timing.sept_add_ns
        self.page_aug_ns = timing.page_aug_ns

    def enter(self, _: Any) -> None:
        """TDH.VP.ENTER (the run loop's, engine.vcpu.Vcpu.enter)."""
        raise NotImplementedError

    def _fault(self, gpa: int) -> None:
        sim = self.sim
        if sim.shared_attr[gpa]:
            self._memory_fault(gpa)
            return
        self.fault_gpa = gpa
        mmu = sim.mmu_lock
        if mmu.queue or mmu.writer:
            mmu.queue.append((False, self._fault_locked))
        else:  # mmu_lock.acquire(False, self._fault_locked), inlined for the free lock
            mmu.readers += 1
            sim.post(sim.now + self.kvm_fault_ns, self, FAULT_WORK)

    def _memory_fault(self, gpa: int) -> None:
        """The access is private but KVM's attributes say shared: exit to userspace."""
        sim = self.sim
        self.memory_faults += 1
        convert = self.memory_faults > self.memory_fault_ignore
        sim.emit((sim.now, sim.timing.memory_fault_ns, MEMORY_FAULT, self.name, None, None, None,
                  None, None, {"gpa": hex(gpa << 12), "action": "convert" if convert else "ignore"}))
        if convert:
            self.memory_faults = 0
            sim.convert_to_private(gpa)
        sim.at(sim.now + sim.timing.memory_fault_ns, self.enter)

    def _fault_locked(self) -> None:
        self.sim.post(self.sim.now + self.kvm_fault_ns, self, FAULT_WORK)

    def _fault_work(self, _: Any) -> None:
        sim = self.sim
        gpa = self.fault_gpa
        if sim.invalidations and sim.invalidating(gpa):
            return self._fault_end()  # mmu_invalidate_retry: RET_PF_RETRY
        if not sim.regions[gpa >> 9]:
            self._call(SEPT_ADD, gpa)
        elif sim.pages[gpa] == UNMAPPED:
            self._call(AUG, gpa)
        else:
            self._fault_end()

    def _call(self, leaf: str, gpa: int) -> None:
        self.leaf = leaf
        self.attempt = 1
        if self.sim.policy.serialise_sept:
            self.sim.vmm_mutex.acquire(self._vmm_granted)
        else:
            self._attempt(None)

    def _vmm_granted(self) -> None:
        self.holds_vmm = True
        self._attempt(None)

    def _attempt(self, _: Any) -> None:
        sim = self.sim
        leaf = self.leaf
        gpa = self.fault_gpa
        t = sim.now
        steps = sim.host_plans[leaf]
        fail = sim.locks.try_plan(steps, self.i, gpa, True)
        attempt = self.attempt
        if fail is None:
            dur = self.seamcall_ns + (self.sept_add_ns if leaf == SEPT_ADD else self.page_aug_ns)
            sim.emit((t, dur, SEAMCALL, self.name, leaf, 0, None, attempt, SUCCESS, None))
            sim.post(t + dur, self, CALL_DONE, steps)
            return
        delay = sim.policy.fault_busy(leaf, fail.status, attempt, sim.retry_max, sim.timing,
                                      sim.rng)
        if delay != GIVE_UP and self.signal_pending:
            delay = GIVE_UP
        sim.emit((t, self.seamcall_ns, SEAMCALL, self.name, leaf, fail.status, fail.operand,
                  attempt, GIVEUP if delay == GIVE_UP else BUSY, None))
        if delay == GIVE_UP:
            self.signal_pending = False
            sim.at(t + self.seamcall_ns, self._gave_up)
        else:
            self.attempt = attempt + 1
            sim.post(t + self.seamcall_ns + delay, self, ATTEMPT)

    def _release_vmm(self) -> None:
        if self.holds_vmm:
            self.holds_vmm = False
            self.sim.vmm_mutex.release()

    def _call_done(self, steps: Plan) -> None:
        sim = self.sim
        gpa = self.fault_gpa
        sim.locks.release_plan(steps, self.i, gpa)
        if self.holds_vmm:
            self._release_vmm()
        if self.leaf == SEPT_ADD:
            sim.regions[gpa >> 9] = 1
        else:
            sim.pages[gpa] = PENDING
        self._fault_work(None)

    def _gave_up(self, _: Any) -> None:
        self._release_vmm()
        self._fault_end()

    def _fault_end(self) -> None:
        self.sim.mmu_lock.release(False)
        self.enter(None)


