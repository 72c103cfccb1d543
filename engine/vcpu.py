"""A vCPU thread's run loop: TDH.VP.ENTER, the guest's run, kicks, and the TD exit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from engine import guest as g
from engine.errors import InvariantError
from engine.fault import ATTEMPT, BUSY_DONE, CALL_DONE, FAULT_WORK, EptViolationHandler
from engine.guest import ACCEPT as OP_ACCEPT
from engine.guest import HLT as OP_HLT
from engine.guest import IO as OP_IO
from engine.guest import STOP as OP_STOP
from engine.locks import Plan
from engine.module import (
    GUEST_PLANS,
    VP_ENTER_BRIEF_PLAN,
    VP_ENTER_BRIEF_ZERO_STEP_PLAN,
    VP_ENTER_HELD_PLAN,
)
from engine.pagebytes import ACCEPTED, BLOCKED, LEAKED, PENDING, UNMAPPED
from engine.records import (
    BUSY,
    ERROR,
    GIVEUP,
    HP_TIMEOUT,
    SEAMCALL,
    SUCCESS,
    TDCALL,
    ZERO_STEP,
    ZERO_STEP_ARMED,
    ZERO_STEP_DISARMED,
)
from engine.status import (
    EXIT_EPT_VIOLATION,
    EXIT_EXTERNAL_INTERRUPT,
    EXIT_HLT,
    EXIT_IO,
    STATUS_CLASS_MASK,
    TDX_HOST_PRIORITY_BUSY_TIMEOUT,
    TDX_OPERAND_BUSY_HOST_PRIORITY,
)
from engine.zerostep import ZeroStepFilter

if TYPE_CHECKING:
    from engine.sim import Simulation

VP_ENTER: Final = "TDH.VP.ENTER"
ACCEPT: Final = "TDG.MEM.PAGE.ACCEPT"
EXIT_STOP: Final = -1  # the script ended: the vCPU halts for good

_ACCEPT_PLAN = GUEST_PLANS[ACCEPT]
_HELD = VP_ENTER_HELD_PLAN


# The vCPU's frequent events, posted as (vcpu, code, arg) and run by Vcpu.dispatch.
ENTER: Final = 0
VM_ENTRY: Final = 1
INSTRUCTION: Final = 2
ACCEPTED_EV: Final = 3
TDCALL_BUSY_DONE: Final = 4
AFTER_EXIT: Final = 5
# 6..9: the fault handler's (engine.fault)


class Vcpu(EptViolationHandler):
    """One vCPU and the host thread that runs it. Methods named after events take `_`:
    they are called by the event heap with one (ignored) argument."""

    def __init__(self, sim: Simulation, index: int, guest: g.Guest,
                 memory_fault_ignore: int = 0) -> None:
        super().__init__(sim, index)
        self.guest = guest
        # The guest is any object with next_op (a Protocol): called through a bound method
        # fetched once rather than looked up by name per instruction.
        self.next_op: Callable[[], g.Op] = guest.next_op
        self.zs = ZeroStepFilter()
        self.memory_fault_ignore = memory_fault_ignore
        self.tdcall_end = 0
        self.op: g.Op | None = None
        self.pos = 0
        self.compute_left = 0
        self.compute_end = 0
        self.gen = 0
        self.in_guest = False
        self.entering = False
        self.in_tdcall = False
        self.kick_pending = False
        self.record_open = False  # its VP.ENTER record is open (sim.open_record)
        self.enter_t = 0
        self.entered_attempt = 1  # the attempt of the VP.ENTER that entered
        self.vm_entry_t = 0
        self.enter_attempt = 1
        self.entry_epoch = 0
        self.hp_since = -1
        self.parked_at = 0
        self.guest_ns = 0
        self.synthetic_end = -1  # a synthetic EPT exit's TDH.VP.ENTER returns then
        # Latencies read on every cycle, copied out of the (fixed) Timing once.
        timing = sim.timing
        self.vp_entry_ns = timing.vp_entry_ns
        self.td_exit_ns = timing.td_exit_ns
        self.accept_ns = timing.accept_ns
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
        else:
            raise InvariantError(f"{self.name}: no event {code}")

    # -- entering the guest ----------------------------------------------------------
    def enter(self, _: Any) -> None:
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
            self.enter_attempt = attempt + 1 if retry else 1
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

    # -- the guest -------------------------------------------------------------------
    def _resume(self) -> None:
        """Run the guest from where it is: the rest of its compute, then its instruction,
        and on through every instruction that needs no exit (a loop, not a recursion: a
        script may run any number of them back to back)."""
        while True:
            op = self.op
            if op is None:
                op = self.op = self.next_op()
                self.pos = 0
                self.compute_left = op.run_ns
            left = self.compute_left
            if left > 0:
                sim = self.sim
                end = self.compute_end = sim.now + left
                sim.post(end, self, INSTRUCTION, self.gen)
                return
            if not self._step():
                return

    def _instruction(self, gen: int) -> None:
        if gen != self.gen:
            return  # a kick ended this run earlier
        self.compute_left = 0
        if self._step():
            self._resume()

    def _step(self) -> bool:
        """Execute the current instruction. True: it completed without leaving the guest
        (the guest goes on); False: it exited or issued a TDCALL."""
        sim = self.sim
        op = self.op
        assert op is not None
        kind = op.kind
        if kind == OP_IO:
            self._exit(EXIT_IO, -1, False, -1)
        elif kind == OP_HLT:
            self._exit(EXIT_HLT, -1, False, -1)
        elif kind == OP_STOP:
            self._exit(EXIT_STOP, -1, False, -1)
        elif kind == OP_ACCEPT:
            gpa = op.gpas[0]
            state = sim.pages[gpa]
            if state == PENDING:
                self._tdcall_accept(gpa)
            elif state == UNMAPPED or state == BLOCKED:
                self.exit_pending = False
                self._exit(EXIT_EPT_VIOLATION, gpa, False, -1)
            else:
                self.op = None  # done
                return True
        else:
            gpas = op.gpas
            pages = sim.pages
            shared = sim.shared_attr
            pos = self.pos
            n = len(gpas)
            while pos < n:
                gpa = gpas[pos]
                state = pages[gpa]
                if shared[gpa] or state == UNMAPPED or state == BLOCKED:
                    self.pos = pos
                    self.exit_pending = False
                    self._exit(EXIT_EPT_VIOLATION, gpa, True, -1)
                    return False
                if state == PENDING:
                    self.pos = pos
                    if op.ve and not sim.sept_ve_disable:
                        self._tdcall_accept(gpa)
                    else:  # no #VE: an EPT-violation exit, counted by the filter
                        self.exit_pending = True
                        self._exit(EXIT_EPT_VIOLATION, gpa, True, -1)
                    return False
                pos += 1
            self.pos = pos
            self.op = None  # done
            return True
        return False

    def _tdcall_accept(self, gpa: int) -> None:
        sim = self.sim
        t = sim.now
        fail = sim.locks.try_plan(_ACCEPT_PLAN, self.i, gpa, False)
        self.in_tdcall = True
        if fail is None:
            self.hp_since = -1
            dur = self.accept_ns
            self.tdcall_end = t + dur
            sim.emit((t, dur, TDCALL, self.name, ACCEPT, 0, None, 1, SUCCESS, None))
            sim.post(t + dur, self, ACCEPTED_EV, gpa)
            return
        timing = sim.timing
        # The BUSY goes back to the guest's handler, which re-executes the instruction:
        # each try is its own logical call.
        self.tdcall_end = t + self.seamcall_ns
        sim.emit((t, self.seamcall_ns, TDCALL, self.name, ACCEPT, fail.status, fail.operand,
                  1, GIVEUP, None))
        if fail.status & STATUS_CLASS_MASK == TDX_OPERAND_BUSY_HOST_PRIORITY:
            if self.hp_since < 0:
                self.hp_since = t
            elif t - self.hp_since >= timing.hp_lock_timeout_ns:
                self.hp_since = -1
                sim.stats["hp_timeouts"] += 1
                sim.emit((t, 0, HP_TIMEOUT, self.name, ACCEPT, None, None, None, None,
                          {"gpa": hex(gpa << 12)}))
                sim.at(t + timing.seamcall_ns, self._forced_exit, None)
                return
        sim.post(t + self.seamcall_ns, self, TDCALL_BUSY_DONE)

    def _forced_exit(self, _: Any) -> None:
        self.in_tdcall = False
        self.kick_pending = False
        self._exit(EXIT_EXTERNAL_INTERRUPT, status=TDX_HOST_PRIORITY_BUSY_TIMEOUT)

    def _tdcall_busy_done(self, _: Any) -> None:
        self.in_tdcall = False
        if self.kick_pending:
            self.kick_pending = False
            self._exit(EXIT_EXTERNAL_INTERRUPT)
            return
        self.compute_left = self.sim.timing.guest_retry_gap_ns
        self._resume()

    def _accepted(self, gpa: int) -> None:
        sim = self.sim
        sim.locks.release_plan(_ACCEPT_PLAN, self.i, gpa)
        pages = sim.pages
        if pages[gpa] == PENDING:
            pages[gpa] = ACCEPTED
        self.in_tdcall = False
        op = self.op
        if op is not None and op.kind == OP_ACCEPT:
            self.op = None
        if self.kick_pending:
            self.kick_pending = False
            self._exit(EXIT_EXTERNAL_INTERRUPT)
            return
        if self.op is None:
            self._resume()
        else:
            self._instruction(self.gen)

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
        """The run ends with this vCPU in the guest: close its TDH.VP.ENTER record."""
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
