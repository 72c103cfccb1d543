"""A vCPU thread's run loop: TDH.VP.ENTER, kicks, and the TD exit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine import guest as g
from engine.accept2m import interrupt_2m
from engine.errors import InvariantError
from engine.fault import ATTEMPT, BUSY_DONE, CALL_DONE, FAULT_WORK, WALK
from engine.guestrun import (
    ACCEPT_WALKED,
    ACCEPTED_EV,
    ATTR_DONE,
    EXIT_STOP,
    INSTRUCTION,
    TDCALL_BUSY_DONE,
    GuestRun,
)
from engine.locks import Plan
from engine.module import (
    VP_ENTER_BRIEF_PLAN,
    VP_ENTER_BRIEF_ZERO_STEP_PLAN,
    VP_ENTER_HELD_PLAN,
)
from engine.pagebytes import ACCEPTED, BLOCKED, LEAKED, UNMAPPED
from engine.records import (
    BUSY,
    ERROR,
    GIVEUP,
    SEAMCALL,
    SUCCESS,
    ZERO_STEP,
    ZERO_STEP_ARMED,
    ZERO_STEP_DISARMED,
)
from engine.status import (
    EXIT_EPT_VIOLATION,
    EXIT_EXTERNAL_INTERRUPT,
    EXIT_HLT,
    EXIT_IO,
)
from engine.zerostep import ZeroStepFilter

if TYPE_CHECKING:
    from engine.sim import Simulation

VP_ENTER: Final = "TDH.VP.ENTER"

_HELD = VP_ENTER_HELD_PLAN


# The vCPU's frequent events, posted as (vcpu, code, arg) and run by Vcpu.dispatch.
ENTER: Final = 0
VM_ENTRY: Final = 1
AFTER_EXIT: Final = 5
# 2..4: the guest's (engine.guestrun); 6..10: the fault handler's (engine.fault)


class Vcpu(GuestRun):
    """One vCPU and the host thread that runs it: KVM's run loop (vcpu_enter_guest and
    tdx_vcpu_run in arch/x86/kvm/x86.c and vmx/tdx.c): TDH.VP.ENTER, the TD exit, kicks.
    The guest's part of a run is engine.guestrun.GuestRun's, the EPT-violation handler
    engine.fault's. Methods named after events take `_`: they are called by the event
    heap with one (ignored) argument."""

    def __init__(self, sim: Simulation, index: int, guest: g.Guest,
                 memory_fault_ignore: int = 0) -> None:
        super().__init__(sim, index, guest)
        self.zs = ZeroStepFilter()
        self.memory_fault_ignore = memory_fault_ignore
        self.in_guest = False
        self.entering = False
        self.record_open = False  # its VP.ENTER record is open (sim.open_record)
        self.enter_t = 0
        self.entered_attempt = 1  # the attempt of the VP.ENTER that entered
        self.vm_entry_t = 0
        self.enter_attempt = 1
        self.entry_epoch = 0
        self.parked_at = 0
        self.guest_ns = 0
        self.synthetic_end = -1  # a synthetic EPT exit's TDH.VP.ENTER returns then
        # Latencies read on every cycle, copied out of the (fixed) Timing once.
        timing = sim.timing
        self.vp_entry_ns = timing.vp_entry_ns
        self.td_exit_ns = timing.td_exit_ns
        self.io_ns = timing.io_ns

    def dispatch(self, code: int, arg: Any) -> None:
        if code == INSTRUCTION:
            self._instruction(arg)
        elif code == VM_ENTRY:
            self._vm_entry(arg)
        elif code == ACCEPTED_EV:
            self._accepted(arg)
        elif code == AFTER_EXIT:
            self._after_exit(arg)
        elif code == FAULT_WORK:
            self._fault_work(arg)
        elif code == CALL_DONE:
            self._call_done(arg)
        elif code == ENTER:
            self.enter(arg)
        elif code == ATTEMPT:
            self._attempt(arg)
        elif code == TDCALL_BUSY_DONE:
            self._tdcall_busy_done(arg)
        elif code == BUSY_DONE:
            self._busy_done(arg)
        elif code == WALK:
            self._walk()
        elif code == ATTR_DONE:
            self._attr_done(arg)
        elif code == ACCEPT_WALKED:
            self._accept_walked(arg)
        else:
            raise InvariantError(f"{self.name}: no event {code}")

    # -- entering the guest ----------------------------------------------------------
    def enter(self, _: Any) -> None:
        """KVM's run loop enters the guest (vcpu_enter_guest -> tdx_vcpu_run ->
        TDH.VP.ENTER): not on a dead VM, not while the zap path's no-entry flag is set
        (wait_for_sept_zap), else the module's entry with its zero-step filter."""
        if self.done:
            return
        # KVM handles a pending signal (a return to userspace) before it enters again.
        self.signal_pending = False
        sim = self.sim
        if sim.vm_dead:  # KVM_REQ_VM_DEAD: KVM_RUN fails with -EIO from now on
            self.done = True
            return
        if sim.no_entry:  # the upstream zap path blocks entry: park until unblock_entry
            self.parked_at = sim.now
            sim.parked.append(self)
            return
        t = sim.now
        locks = sim.locks
        i = self.i
        fail = locks.try_plan(_HELD, i, 0, True)
        armed = False
        brief = VP_ENTER_BRIEF_PLAN
        if fail is None:
            gpas = self.zs.gpas
            if gpas and sim.zero_step:
                armed = True
                brief = VP_ENTER_BRIEF_ZERO_STEP_PLAN
                sim.emit((t, 0, ZERO_STEP, self.name, VP_ENTER, None, None, None, None,
                          {"gpas": len(gpas)}))
            fail = locks.try_plan(brief, i, 0, True)
            if fail is not None:
                locks.release_plan(_HELD, i, 0)
        attempt = self.enter_attempt
        if fail is not None:
            timing = sim.timing
            retry = sim.policy.enter_busy(fail.status, attempt, sim.retry_max)
            sim.emit((t, timing.seamcall_ns, SEAMCALL, self.name, VP_ENTER, fail.status,
                      fail.operand, attempt, BUSY if retry else GIVEUP, None))
            same_call = retry and sim.policy.own_loops_continue_call
            self.enter_attempt = attempt + 1 if same_call else 1
            gap = timing.retry_gap_ns if retry else timing.reenter_gap_ns
            sim.post(t + timing.seamcall_ns + gap, self, ENTER)
            return
        self.enter_attempt = 1
        self.entry_epoch = sim.td_epoch
        if armed:
            missing = next((p for p in self.zs.gpas if sim.pages[p] in (UNMAPPED, BLOCKED)), -1)
            if missing >= 0:
                # Re-walk found a listed GPA unmapped: no entry, a synthetic EPT exit.
                timing = sim.timing
                dur = timing.vp_entry_ns + timing.td_exit_ns
                sim.emit((t, dur, SEAMCALL, self.name, VP_ENTER, EXIT_EPT_VIOLATION, None,
                          attempt, SUCCESS, {"synthetic": True, "gpa": hex(missing << 12)}))
                sim.stats["synthetic_exits"] += 1
                sim.at(t + timing.vp_entry_ns, self._release_brief, brief)
                self.fault_gpa = missing
                self.synthetic_end = t + dur
                sim.at(t + dur, self._after_synthetic, None)
                return
        sim.open_record(i)
        self.record_open = True
        self.entered_attempt = attempt
        self.enter_t = t
        self.entering = True
        sim.post(t + self.vp_entry_ns, self, VM_ENTRY, brief)

    def _release_brief(self, brief: Plan) -> None:
        self.sim.locks.release_plan(brief, self.i, 0)

    def _after_synthetic(self, _: Any) -> None:
        self.synthetic_end = -1
        self.sim.locks.release_plan(_HELD, self.i, 0)
        self.exit_pending = False
        self._fault(self.fault_gpa)

    def _vm_entry(self, brief: Plan) -> None:
        sim = self.sim
        sim.locks.release_plan(brief, self.i, 0)
        self.entering = False
        self.in_guest = True
        self.vm_entry_t = sim.now
        op = self.op
        # ZeroStepFilter.on_entry: the guest resumes at the instruction of interest only
        # when its guest time before it is over; mid-way it is somewhere else.
        self.zs.entry_rip = op.rip if op is not None and self.compute_left == 0 else -1
        if self.kick_pending:
            self.kick_pending = False
            self._exit(EXIT_EXTERNAL_INTERRUPT)
            return
        self._resume()

    def kick(self) -> int:
        """An IPI (kvm_make_all_cpus_request's): leave guest mode as soon as possible.
        Returns when this vCPU will be out of guest mode, its TD exit back in the host,
        which is what the requester waits for: a vCPU mid-entry finishes entering, then
        takes the IPI's exit; one in a TDCALL exits when the TDCALL returns."""
        now = self.sim.now
        if self.entering:
            self.kick_pending = True
            return self.enter_t + self.vp_entry_ns + self.td_exit_ns
        if self.in_guest:
            if self.in_tdcall:
                self.kick_pending = True
                if self.accepting_2m is not None:  # it stops after its current 4K chunk
                    return interrupt_2m(self) + self.td_exit_ns
                return max(self.tdcall_end, now) + self.td_exit_ns
            self.gen += 1
            if self.compute_left:
                self.compute_left = max(0, self.compute_end - now)
            self._exit(EXIT_EXTERNAL_INTERRUPT)
            return now + self.td_exit_ns
        if self.synthetic_end >= 0:  # inside a TDH.VP.ENTER that returns a synthetic exit
            return self.synthetic_end
        return now

    # -- the TD exit -----------------------------------------------------------------
    def _exit(self, reason: int, gpa: int = -1, counted: bool = False, status: int = -1) -> None:
        sim = self.sim
        t = sim.now
        self.in_guest = False
        self.guest_ns += t - self.vm_entry_t
        end = t + self.td_exit_ns
        if not self.record_open:
            raise InvariantError(f"{self.name}: exit with no VP.ENTER record open")
        self.record_open = False
        start = self.enter_t
        if status >= 0:
            outcome = ERROR
        else:
            outcome = SUCCESS
            status = max(reason, EXIT_HLT) if reason == EXIT_STOP else reason
        sim.close_record(self.i, (start, end - start, SEAMCALL, self.name, VP_ENTER, status, None,
                                  self.entered_attempt, outcome, None))
        if counted and sim.zero_step and reason == EXIT_EPT_VIOLATION:
            self._count(gpa)
        sim.post(end, self, AFTER_EXIT, (reason, gpa))

    def _count(self, gpa: int) -> None:
        op = self.op
        rip = op.rip if op is not None else -1
        change = self.zs.on_ept_exit(rip, gpa)
        if change:
            sim = self.sim
            kind = ZERO_STEP_ARMED if change > 0 else ZERO_STEP_DISARMED
            sim.emit((sim.now, 0, kind, self.name, None, None, None, None, None,
                      {"count": self.zs.counter, "rip": hex(rip), "gpa": hex(gpa << 12)}))

    def close_at_end(self) -> None:
        """The run ends with this vCPU in the guest: close its TDH.VP.ENTER record. (Or in
        upstream's local retry: its held BUSY would have been retried, `busy`.)"""
        if self.held is not None:
            self._resolve(BUSY)
        if self.record_open:
            self.record_open = False
            start = self.enter_t
            end = max(self.sim.now, self.tdcall_end) if self.in_tdcall else self.sim.now
            self.sim.close_record(self.i, (start, max(end - start, 0), SEAMCALL, self.name,
                                           VP_ENTER, EXIT_EXTERNAL_INTERRUPT, None,
                                           self.entered_attempt, SUCCESS, None))

    def _after_exit(self, info: tuple[int, int]) -> None:
        sim = self.sim
        sim.locks.release_plan(_HELD, self.i, 0)
        reason, gpa = info
        if reason == EXIT_EPT_VIOLATION:
            self._fault(gpa)
        elif reason == EXIT_IO:
            self.op = None
            sim.post(sim.now + self.io_ns, self, ENTER)
        elif reason == EXIT_HLT:
            hold = self.op.arg if self.op is not None else 0
            self.op = None
            sim.post(sim.now + hold, self, ENTER)
        elif reason == EXIT_STOP:
            self.done = True
        else:
            self.enter(None)

__all__ = ["Vcpu", "ACCEPTED", "LEAKED"]
