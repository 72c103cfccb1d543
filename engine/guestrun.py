"""The guest's part of a vCPU's run: its instructions, and the #VE handler's ACCEPTs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from engine import guest as g
from engine.accept2m import accept_2m
from engine.errors import InvariantError
from engine.fault import EptViolationHandler
from engine.guest import ACCEPT as OP_ACCEPT
from engine.guest import HLT as OP_HLT
from engine.guest import IO as OP_IO
from engine.guest import STOP as OP_STOP
from engine.module import GUEST_PLANS
from engine.pagebytes import ACCEPTED, BLOCKED, PENDING, UNMAPPED
from engine.records import GIVEUP, HP_TIMEOUT, SUCCESS, TDCALL
from engine.status import (
    EXIT_EPT_VIOLATION,
    EXIT_EXTERNAL_INTERRUPT,
    EXIT_HLT,
    EXIT_IO,
    STATUS_CLASS_MASK,
    TDX_HOST_PRIORITY_BUSY_TIMEOUT,
    TDX_OPERAND_BUSY_HOST_PRIORITY,
)

if TYPE_CHECKING:
    from engine.sim import Simulation

ACCEPT: Final = "TDG.MEM.PAGE.ACCEPT"
EXIT_STOP: Final = -1  # the script ended: the vCPU halts for good
_ACCEPT_PLAN = GUEST_PLANS[ACCEPT]

# The guest's events, posted as (vcpu, code, arg) and run by the vCPU's dispatch.
INSTRUCTION: Final = 2
ACCEPTED_EV: Final = 3
TDCALL_BUSY_DONE: Final = 4


class GuestRun(EptViolationHandler):
    """What the guest does between VM entry and its next exit: guest time, then the
    instruction of interest; a PENDING page takes a #VE whose handler issues
    TDG.MEM.PAGE.ACCEPT (MODEL.md 4, 6). The vCPU's run loop (engine.vcpu.Vcpu) derives
    from this class and provides `_exit`, the TD exit."""

    def __init__(self, sim: Simulation, index: int, guest: g.Guest) -> None:
        super().__init__(sim, index)
        self.guest = guest
        # The guest is any object with next_op (a Protocol): called through a bound method
        # fetched once rather than looked up by name per instruction.
        self.next_op: Callable[[], g.Op] = guest.next_op
        self.op: g.Op | None = None
        self.pos = 0
        self.compute_left = 0
        self.compute_end = 0
        self.gen = 0  # bumped by a kick: a pending INSTRUCTION event of the old run is void
        self.in_tdcall = False
        self.tdcall_end = 0
        self.kick_pending = False
        self.hp_since = -1
        self.accept_ns = sim.timing.accept_ns
        # A 2M ACCEPT in progress (engine.huge): (start, record index, chunks before, end).
        self.accepting_2m: tuple[int, int, int, int] | None = None

    def _exit(self, reason: int, gpa: int = -1, counted: bool = False, status: int = -1) -> None:
        """The TD exit (the run loop's, engine.vcpu.Vcpu._exit)."""
        raise InvariantError(f"{type(self).__name__} has no run loop: only engine.vcpu.Vcpu "
                             "takes TD exits")

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
            if op.arg:  # the ACCEPT is at the 2M level
                return accept_2m(self, gpa)
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

