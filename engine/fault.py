"""KVM's EPT-violation handler for a vCPU: the fault, its SEAMCALLs and their retry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.actor import Actor
from engine.errors import InvariantError
from engine.guest import ACCEPT as OP_ACCEPT
from engine.guest import Op
from engine.huge import LEVEL_2M, mapped_2m
from engine.locks import Plan
from engine.pagebytes import PENDING, UNMAPPED
from engine.policies import GIVE_UP, RERUN
from engine.records import BUSY, GIVEUP, MEMORY_FAULT, SEAMCALL, SUCCESS, VM_DEAD, Record

if TYPE_CHECKING:
    from engine.sim import Simulation

SEPT_ADD: Final = "TDH.MEM.SEPT.ADD"
AUG: Final = "TDH.MEM.PAGE.AUG"

# The handler's events, posted as (vcpu, code, arg) and run by the vCPU's dispatch.
FAULT_WORK: Final = 6
CALL_DONE: Final = 7
ATTEMPT: Final = 8
BUSY_DONE: Final = 9
WALK: Final = 10

# What one run of the fault returned (kvm_tdp_mmu_map's RET_PF_*).
_FIXED: Final = 0  # mapped, by this fault or before it
RETRY: Final = 1  # RET_PF_RETRY: run the fault again
USERSPACE: Final = 2  # an exit to userspace, which re-enters the vCPU itself (a memslot)
# RET_PF_RETRY that nothing but a signal or a dead VM can change (a stalled memslot
# deletion): a loop that would retry waits instead, with no events, until wake_stalled.
STALLED: Final = 3
# RET_PF_RETRY that leaves the local loop: the run loop re-enters the guest (6.18's
# tdx_handle_ept_violation breaks out when the GFN's memslot is KVM_MEMSLOT_INVALID).
LEAVE_LOOP: Final = 4

# A memslot's state (engine.hostactors.Memslot.state), as the fault path reads it.
ACTIVE: Final = 0  # a slot that faults normally
INVALID: Final = 1  # KVM_MEMSLOT_INVALID: deletion in progress
DELETED: Final = 2  # gone until userspace recreates it


class EptViolationHandler(Actor):
    """The host side of a vCPU's EPT-violation exit, as KVM runs it.

    tdx_handle_ept_violation (arch/x86/kvm/vmx/tdx.c) runs the fault (kvm_tdp_mmu_map in
    mmu/tdp_mmu.c: mmu_lock for read, walk, install); a result of RET_PF_RETRY runs the
    whole fault again: under `upstream` in a local loop without TDH.VP.ENTER, which
    leaves only for a pending signal or a dead VM; under the re-entry policies by
    entering the guest, which faults again at the same RIP.

    Installing a mapping freezes the mirror SPTE first (tdp_mmu_set_spte_atomic's
    cmpxchg to FROZEN_SPTE), then issues TDH.MEM.SEPT.ADD or TDH.MEM.PAGE.AUG
    (tdx_sept_link_private_spt, tdx_sept_set_private_spte), then sets the SPTE, or
    restores it when the SEAMCALL failed. A vCPU that finds the SPTE frozen returns
    RET_PF_RETRY without a SEAMCALL: two AUGs of one GFN never happen.

    A guest ACCEPT at 2M of a region that nothing maps is mapped with one
    TDH.MEM.PAGE.AUG at PG_LEVEL_2M, freezing the region's SPTE (engine.huge).

    The vCPU's run loop (engine.vcpu.Vcpu) derives from this class and provides `enter`.
    """

    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.i = index
        self.name = f"vcpu{index}"
        self.signal_pending = False
        self.done = False
        self.memory_fault_ignore = 0
        self.memory_faults = 0
        self.host_delay_ns = 0  # a preempted vCPU thread: this long before each SEAMCALL
        self.exit_pending = False  # the exit was an access to a PENDING page (no #VE)
        # The fault in progress: its GPA, whether it holds mmu_lock and a frozen SPTE.
        self.fault_gpa = 0
        self.in_fault = False
        self.frozen = -1  # -1, or the page (>= 0) or region (-2 - region) it froze
        # The memslot whose stalled deletion this fault keeps retrying on, and whether
        # the loop waits for wake_stalled (it would only spin: the engine must not).
        self.stalled_on: Any = None
        self.asleep = False
        # The guest's instruction being handled (engine.guestrun sets it): an ACCEPT at 2M
        # (`arg` LEVEL_2M) has its region mapped with one 2M AUG.
        self.op: Op | None = None
        self.huge_call = False  # the call in progress is that AUG (engine.huge)
        self.work_ns = 0  # the module's work in the call in progress, besides the round trip
        # The current logical call of the fault path.
        self.leaf = ""
        self.attempt = 1
        self.holds_vmm = False
        # upstream: a BUSY whose outcome the next run of the fault decides (busy when it
        # issues the same leaf again, giveup when it does not); its place in the log is
        # held with sim.open_record.
        self.held: Record | None = None
        self.held_extra: dict[str, Any] | None = None  # its extra keys (engine.inject)
        timing = sim.timing
        self.seamcall_ns = timing.seamcall_ns
        self.kvm_fault_ns = timing.kvm_fault_ns
        self.sept_add_ns = timing.sept_add_ns
        self.page_aug_ns = timing.page_aug_ns
        self.page_aug_2m_ns = timing.page_aug_2m_ns

    def enter(self, _: Any) -> None:
        """TDH.VP.ENTER (the run loop's, engine.vcpu.Vcpu.enter)."""
        raise InvariantError(f"{type(self).__name__} has no run loop: only engine.vcpu.Vcpu "
                             "enters the guest")

    # -- tdx_handle_ept_violation ----------------------------------------------------
    def _fault(self, gpa: int) -> None:
        sim = self.sim
        if sim.shared_attr[gpa]:
            self._memory_fault(gpa)
            return
        if self.exit_pending and sim.sept_ve_disable:
            self._vm_dead(gpa)
            return
        self.fault_gpa = gpa
        self.in_fault = True
        self._run_fault()

    def _run_fault(self) -> None:
        """One run of the fault: mmu_lock for read, then KVM's handling time."""
        mmu = self.sim.mmu_lock
        if mmu.queue or mmu.writer:
            mmu.queue.append((False, self._fault_locked))
        else:  # mmu_lock.acquire(False, self._fault_locked), inlined for the free lock
            mmu.readers += 1
            self.sim.post(self.sim.now + self.kvm_fault_ns, self, FAULT_WORK)

    def _fault_locked(self) -> None:
        self.sim.post(self.sim.now + self.kvm_fault_ns, self, FAULT_WORK)

    def _vm_dead(self, gpa: int) -> None:
        """A guest access to a PENDING page with SEPT_VE_DISABLE: mainline KVM calls it a
        guest bug and kills the VM (kvm_vm_dead, -EIO); no vCPU enters again."""
        sim = self.sim
        sim.emit((sim.now, 0, VM_DEAD, self.name, None, None, None, None, None,
                  {"gpa": hex(gpa << 12), "reason": "pending page access with sept_ve_disable"}))
        self.done = True
        sim.kill_vm()

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

    # -- kvm_tdp_mmu_map -------------------------------------------------------------
    def _fault_work(self, _: Any) -> None:
        sim = self.sim
        gpa = self.fault_gpa
        if sim.vm_dead:
            return self._fault_end(RETRY)
        if sim.invalidations and sim.invalidating(gpa):
            return self._fault_end(RETRY)  # mmu_invalidate_retry_gfn: RET_PF_RETRY
        if sim.memslots:
            for slot in sim.memslots:
                if slot.lo <= gpa < slot.hi and slot.state:
                    return self._fault_end(slot.fault(self))
        self._walk()

    def _walk(self) -> None:
        """The TDP MMU walk down to the leaf: install what is missing, one level at a
        time (the checks above ran once, before it, as kvm_faultin_pfn's do)."""
        sim = self.sim
        gpa = self.fault_gpa
        region = gpa >> 9
        if not self.holds_vmm and sim.policy.serialise_sept and (
                not sim.regions[region] or sim.pages[gpa] == UNMAPPED):
            # vmm_lock: the host mutex around the SEPT SEAMCALLs; after the wait the walk
            # runs again, and may find everything mapped by now.
            sim.vmm_mutex.acquire(self._vmm_granted)
            return
        if not sim.regions[region]:
            if sim.huge[region]:
                return self._fault_end(_FIXED)  # a 2 MB leaf maps it (engine.huge)
            if sim.frozen_regions[region]:
                return self._fault_end(RETRY)  # is_frozen_spte: another vCPU installs it
            sim.frozen_regions[region] = 1
            self.frozen = -2 - region
            # The guest accepts at 2M: the region's SPTE becomes a 2 MB leaf (one AUG at
            # PG_LEVEL_2M) rather than a page table.
            op = self.op
            if (op is not None and op.kind == OP_ACCEPT and op.arg == LEVEL_2M
                    and op.gpas[0] == gpa):
                self._call(AUG, True)
            else:
                self._call(SEPT_ADD)
        elif sim.pages[gpa] == UNMAPPED:
            if sim.frozen[gpa]:
                return self._fault_end(RETRY)
            sim.frozen[gpa] = 1
            self.frozen = gpa
            self._call(AUG)
        else:
            self._fault_end(_FIXED)

    def _unfreeze(self) -> None:
        frozen = self.frozen
        if frozen >= 0:
            self.sim.frozen[frozen] = 0
        elif frozen < -1:
            self.sim.frozen_regions[-2 - frozen] = 0
        self.frozen = -1

    def _call(self, leaf: str, huge: bool = False) -> None:
        self.huge_call = huge
        if leaf == SEPT_ADD:
            self.work_ns = self.sept_add_ns
        else:
            self.work_ns = self.page_aug_2m_ns if huge else self.page_aug_ns
        held = self.held
        if held is not None and held[4] != leaf:
            self._resolve(GIVEUP)  # the re-run fault needs another leaf: a new call
        if self.held is None:
            self.leaf = leaf
            self.attempt = 1
        else:
            self.attempt += 1  # the same call again after the re-run fault
        if self.host_delay_ns:
            self.sim.post(self.sim.now + self.host_delay_ns, self, ATTEMPT)
        else:
            self._attempt(None)

    def _vmm_granted(self) -> None:
        # An event, not a call: the mutex is handed over inside the holder's release, and
        # a chain of waiters must not become a chain of nested calls.
        self.holds_vmm = True
        self.sim.post(self.sim.now, self, WALK)

    def _resolve(self, outcome: str) -> None:
        """Write the held BUSY record with its outcome, in the place it holds."""
        held = self.held
        assert held is not None
        self.held = None
        self.sim.close_record(self.i, (*held, outcome, self.held_extra))

    # -- the SEAMCALL ----------------------------------------------------------------
    def _attempt(self, _: Any) -> None:
        sim = self.sim
        leaf = self.leaf
        gpa = self.fault_gpa
        t = sim.now
        if sim.injector is not None and sim.injector.fault_call(self):
            return  # engine.inject: the debug config's BUSY, handled as one out of the wrapper
        steps = sim.host_plans[leaf]
        fail = sim.locks.try_plan(steps, self.i, gpa, True)
        attempt = self.attempt
        if self.held is not None:
            self._resolve(BUSY)
        if fail is None:
            dur = self.seamcall_ns + self.work_ns
            sim.emit((t, dur, SEAMCALL, self.name, leaf, 0, None, attempt, SUCCESS, None))
            sim.post(t + dur, self, CALL_DONE, steps)
            return
        self.busy_returned(t, fail.status, fail.operand, sim.retry_max, None)

    def busy_returned(self, t: int, status: int, operand: str, retry_max: int,
                      extra: dict[str, Any] | None) -> None:
        """The SEAMCALL returned a BUSY `status`: what the policy does with it, given
        `retry_max` retries in the SEPT wrapper (0 for a BUSY the wrapper never retries)."""
        sim = self.sim
        leaf = self.leaf
        attempt = self.attempt
        delay = sim.policy.fault_busy(leaf, status, attempt, retry_max, sim.timing, sim.rng)
        if delay == RERUN:
            # The outcome waits for the re-run fault: hold the record's place.
            sim.open_record(self.i)
            self.held = (t, self.seamcall_ns, SEAMCALL, self.name, leaf, status, operand, attempt)
            self.held_extra = extra
            sim.post(t + self.seamcall_ns, self, BUSY_DONE)
            return
        sim.emit((t, self.seamcall_ns, SEAMCALL, self.name, leaf, status, operand,
                  attempt, GIVEUP if delay == GIVE_UP else BUSY, extra))
        if delay == GIVE_UP:
            sim.post(t + self.seamcall_ns, self, BUSY_DONE)
        else:
            # The SEPT wrapper's retry, inside the SEAMCALL helper: the SPTE stays frozen.
            self.attempt = attempt + 1
            sim.post(t + self.seamcall_ns + delay, self, ATTEMPT)

    def _busy_done(self, _: Any) -> None:
        """The BUSY went back to the TDP MMU: restore the SPTE; RET_PF_RETRY."""
        self._unfreeze()
        self._fault_end(RETRY)

    def _release_vmm(self) -> None:
        if self.holds_vmm:
            self.holds_vmm = False
            self.sim.vmm_mutex.release()

    def _call_done(self, steps: Plan) -> None:
        sim = self.sim
        gpa = self.fault_gpa
        sim.locks.release_plan(steps, self.i, gpa)
        if self.leaf == SEPT_ADD:
            sim.regions[gpa >> 9] = 1
        elif self.huge_call:
            mapped_2m(sim, gpa)
        else:
            if sim.pages[gpa] != UNMAPPED:
                raise InvariantError(f"{self.name}: AUG of page {gpa:#x} in state "
                                     f"{sim.pages[gpa]}: its SPTE was frozen")
            sim.pages[gpa] = PENDING
        self._unfreeze()
        self._walk()  # the walk goes on: the AUG after a SEPT.ADD

    # -- the end of one run of the fault, and the local retry -----------------------
    def _fault_end(self, result: int) -> None:
        sim = self.sim
        self._release_vmm()
        sim.mmu_lock.release(False)
        if result == RETRY and self.retries_locally():
            self._run_fault()
            return
        if result == STALLED:
            if self.retries_locally():
                self.asleep = True  # until a signal, a dead VM or a policy change
                return
            result = RETRY
        if self.held is not None:
            self._resolve(GIVEUP)
        self.in_fault = False
        slot = self.stalled_on
        if slot is not None:
            self.stalled_on = None
            slot.left()
        if result != USERSPACE:
            self.enter(None)

    def wake_stalled(self) -> None:
        """Something that could end a stalled loop happened (a signal, a dead VM, a new
        policy): run the fault again, as the spinning loop would have next."""
        if self.asleep:
            self.asleep = False
            self._run_fault()

    def retries_locally(self) -> bool:
        """tdx_handle_ept_violation's loop: run the fault again without entering the
        guest, unless a signal is pending or the VM is dead (kvm_vcpu_has_events sees
        no events for a TD)."""
        sim = self.sim
        return sim.policy.local_retry and not self.signal_pending and not sim.vm_dead
