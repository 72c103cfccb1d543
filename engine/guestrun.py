"""The guest's part of a vCPU's run: its instructions, and the #VE handler's ACCEPTs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from engine import guest as g
from engine.accept2m import accept_2m
from engine.errors import InvariantError
from engine.fault import EptViolationHandler
from engine.guest import ACCEPT as OP_ACCEPT
from engine.guest import ATTR_RD as OP_ATTR_RD
from engine.guest import HLT as OP_HLT
from engine.guest import IO as OP_IO
from engine.guest import STOP as OP_STOP
from engine.guest import VE_ALLOW_MMIO
from engine.locks import Failure, Plan
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
# The attribute TDCALLs by op kind - OP_ATTR_RD (tdg_mem_page_attr_rd, tdg_mem_page_attr_wr).
ATTR_LEAVES: Final = ("TDG.MEM.PAGE.ATTR.RD", "TDG.MEM.PAGE.ATTR.WR")
EXIT_STOP: Final = -1  # the script ended: the vCPU halts for good
_ACCEPT_PLAN = GUEST_PLANS[ACCEPT]

# The guest's events, posted as (vcpu, code, arg) and run by the vCPU's dispatch.
INSTRUCTION: Final = 2
ACCEPTED_EV: Final = 3
TDCALL_BUSY_DONE: Final = 4
ATTR_DONE: Final = 20  # (codes above 10 are free of the run loop's and the handler's)
ACCEPT_WALKED: Final = 21


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
        # The guest's #VE handler for a PENDING page: 0 ACCEPTs it, else a VE_* of
        # engine.guest (the UPM selftest's handlers that do not).
        self.ve_handler = 0
        self.attr_plan: Plan = GUEST_PLANS[ATTR_LEAVES[0]]
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
                self._tdcall(ACCEPT, _ACCEPT_PLAN, gpa, self.accept_ns, ACCEPTED_EV)
            elif state == UNMAPPED or state == BLOCKED:
                self._accept_walk(gpa)
            else:
                self.op = None  # done
                return True
        elif kind >= OP_ATTR_RD:
            self._attr(op)
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
                        if self.ve_handler:  # a #VE handler that does not ACCEPT
                            return self._ve_not_accepting(pos)
                        self._tdcall(ACCEPT, _ACCEPT_PLAN, gpa, self.accept_ns, ACCEPTED_EV)
                    else:  # no #VE: an EPT-violation exit, counted by the filter
                        self.exit_pending = True
                        self._exit(EXIT_EPT_VIOLATION, gpa, True, -1)
                    return False
                pos += 1
            self.pos = pos
            self.op = None  # done
            return True
        return False

    def _accept_walk(self, gpa: int) -> None:
        """TDG.MEM.PAGE.ACCEPT of a page nothing maps (never AUGed, or blocked): the module
        takes the page's SEPT entry lock, guest side, before its walk finds the entry not
        PENDING (tdg_mem_page_accept: sept_lock_acquire_guest, then check_tdaccept_failure),
        and takes an EPT-violation exit only after that, releasing the lock. For that
        TDCALL's round trip a host AUG of the same GPA meets a guest-held entry: BUSY on
        RCX, and in module 1.5 the host-priority bit that the guest's next ACCEPT then
        meets. A lock held by the host answers the guest BUSY, as for a PENDING page."""
        sim = self.sim
        fail = sim.locks.try_plan(_ACCEPT_PLAN, self.i, gpa, False)
        if fail is not None:
            self._tdcall_busy(ACCEPT, fail, gpa)
            return
        self.hp_since = -1
        self.in_tdcall = True
        self.tdcall_end = sim.now + self.seamcall_ns
        sim.post(self.tdcall_end, self, ACCEPT_WALKED, gpa)

    def _accept_walked(self, gpa: int) -> None:
        """The walk of `_accept_walk` ended: the lock goes, the TD exits for the fault."""
        self.sim.locks.release_plan(_ACCEPT_PLAN, self.i, gpa)
        self.in_tdcall = False
        self.kick_pending = False  # the exit below is the one a kick waits for
        self.exit_pending = False
        self._exit(EXIT_EPT_VIOLATION, gpa, False, -1)

    def _ve_not_accepting(self, pos: int) -> bool:
        """A #VE on a PENDING page whose handler does not ACCEPT (tdx_upm_parallel_test's
        guest mixes): `disallow_accept` returns to the instruction, which takes the #VE
        again at the same RIP (a spin in the guest, no TD exit, nothing for the zero-step
        filter to count); `allow_mmio` skips the access as if it were MMIO. Either costs
        `ve_ns` of guest time; True: the guest goes on."""
        sim = self.sim
        if self.ve_handler == VE_ALLOW_MMIO:
            self.pos = pos + 1
            sim.stats["ve_skipped"] += 1
        else:
            sim.stats["ve_not_accepted"] += 1
        self.compute_left = sim.timing.ve_ns
        return True

    def _attr(self, op: g.Op) -> None:
        """TDG.MEM.PAGE.ATTR.RD/WR (tdg_mem_page_attr_rd/_wr): the SEPT entry lock, guest
        side, held for a TDCALL round trip plus the step's `hold_ns`; on a page that is not
        a mapped leaf (never AUGed, zapped, blocked) the module takes an EPT-violation
        exit instead (basic_ept_violation_exit), which the host faults in."""
        gpa = op.gpas[0]
        state = self.sim.pages[gpa]
        if state == ACCEPTED or state == PENDING:
            leaf = ATTR_LEAVES[op.kind - OP_ATTR_RD]
            plan = self.attr_plan = GUEST_PLANS[leaf]
            self._tdcall(leaf, plan, gpa, self.seamcall_ns + op.arg, ATTR_DONE)
        else:
            self.exit_pending = False
            self._exit(EXIT_EPT_VIOLATION, gpa, False, -1)

    def _attr_done(self, gpa: int) -> None:
        """The attribute TDCALL returned: the entry lock is free, the instruction done."""
        self.sim.locks.release_plan(self.attr_plan, self.i, gpa)
        self.in_tdcall = False
        self.op = None
        if self.kick_pending:
            self.kick_pending = False
            self._exit(EXIT_EXTERNAL_INTERRUPT)
            return
        self._resume()

    def _tdcall(self, leaf: str, plan: Plan, gpa: int, dur: int, done: int) -> None:
        """A guest TDCALL that takes the page's SEPT entry lock, guest side
        (sept_lock_acquire_guest): TDG.MEM.PAGE.ACCEPT of a PENDING page (tdg_mem_page_accept,
        from the #VE handler or an explicit accept; `done` ACCEPTED_EV) or an attribute
        TDCALL (`done` ATTR_DONE). On success it holds the lock for `dur` and posts `done`;
        a BUSY goes back to the guest, which re-executes the instruction (each try its own
        logical call); a BUSY_HOST_PRIORITY that lasts `hp_lock_timeout_ns` makes the
        module force a TD exit with TDX_HOST_PRIORITY_BUSY_TIMEOUT (`hp_timeout`)."""
        sim = self.sim
        t = sim.now
        fail = sim.locks.try_plan(plan, self.i, gpa, False)
        self.in_tdcall = True
        if fail is None:
            self.hp_since = -1
            self.tdcall_end = t + dur
            sim.emit((t, dur, TDCALL, self.name, leaf, 0, None, 1, SUCCESS, None))
            sim.post(t + dur, self, done, gpa)
            return
        self._tdcall_busy(leaf, fail, gpa)

    def _tdcall_busy(self, leaf: str, fail: Failure, gpa: int,
                     extra: dict[str, Any] | None = None) -> None:
        """A guest TDCALL that found its lock held: BUSY back to the guest, which retries
        (or, kept busy by host priority too long, is forced out: `hp_timeout`). `extra`:
        the record's further keys (a 2M ACCEPT's level)."""
        sim = self.sim
        t = sim.now
        timing = sim.timing
        self.in_tdcall = True
        self.tdcall_end = t + self.seamcall_ns
        sim.emit((t, self.seamcall_ns, TDCALL, self.name, leaf, fail.status, fail.operand,
                  1, GIVEUP, extra))
        if fail.status & STATUS_CLASS_MASK == TDX_OPERAND_BUSY_HOST_PRIORITY:
            if self.hp_since < 0:
                self.hp_since = t
            elif t - self.hp_since >= timing.hp_lock_timeout_ns:
                self.hp_since = -1
                sim.stats["hp_timeouts"] += 1
                sim.emit((t, 0, HP_TIMEOUT, self.name, leaf, None, None, None, None,
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

