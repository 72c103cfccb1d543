"""The guest's TDG.MEM.PAGE.ACCEPT at 2M (engine.huge has the 2 MB mappings it accepts).

tdg_mem_page_accept at PG_LEVEL_2M takes the 2 MB entry's guest-side lock and zeroes the
512 pages 4K by 4K; after each chunk it checks IA32_INTR_PENDING
(is_interrupt_pending_guest_side) and, with an interrupt pending, stops with its progress
in the entry's accept counter and the lock released: the guest resumes the ACCEPT after
re-entry. A region that nothing maps exits to KVM (which AUGs it at 2M); one that 4K
entries map is TDX_PAGE_SIZE_MISMATCH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.errors import InvariantError
from engine.huge import LEVEL_2M, REGION_PAGES
from engine.module import GUEST_PLANS
from engine.pagebytes import ACCEPTED, BLOCKED, HUGE, NOT_HUGE, PENDING
from engine.records import ERROR, SUCCESS, TDCALL
from engine.status import (
    EXIT_EPT_VIOLATION,
    EXIT_EXTERNAL_INTERRUPT,
    TDX_PAGE_SIZE_MISMATCH,
)

if TYPE_CHECKING:
    from engine.guestrun import GuestRun
    from engine.sim import Simulation

ACCEPT: Final = "TDG.MEM.PAGE.ACCEPT"
_ACCEPT_PLAN = GUEST_PLANS[ACCEPT]


def accept_2m(vcpu: GuestRun, gpa: int) -> bool:
    """The guest's TDG.MEM.PAGE.ACCEPT at the 2M level of a 2 MB-aligned page (its Op's
    `arg` is LEVEL_2M). True: done without leaving the guest (already accepted, or the
    module refused it); False: it exited or issued the TDCALL."""
    sim = vcpu.sim
    region = gpa >> 9
    huge = sim.huge[region]
    state = sim.pages[gpa]
    if huge == HUGE and state == PENDING:
        _tdcall_2m(vcpu, gpa)
        return False
    if (huge == NOT_HUGE and not sim.regions[region]) or state == BLOCKED:
        # Nothing maps the region (or its leaf is being zapped): an EPT violation, and
        # KVM maps it at the level the guest accepts at. ACCEPT exits are not counted.
        vcpu.exit_pending = False
        vcpu._exit(EXIT_EPT_VIOLATION, gpa, False, -1)
        return False
    if huge == NOT_HUGE:
        # 4K entries map the region: the module refuses a 2M ACCEPT, with the level its
        # walk ended at (1, the 2M level) as the operand. (Linux then accepts at 4K, which
        # a script writes as 4K `accept` steps.)
        t = sim.now
        sim.emit((t, vcpu.seamcall_ns, TDCALL, vcpu.name, ACCEPT,
                  TDX_PAGE_SIZE_MISMATCH | LEVEL_2M, None, 1, ERROR, {"level": "2M"}))
        vcpu.op = None
        vcpu.in_tdcall = True
        vcpu.tdcall_end = t + vcpu.seamcall_ns
        sim.at(t + vcpu.seamcall_ns, vcpu._tdcall_busy_done)  # the guest goes on after it
        return False
    vcpu.op = None  # accepted already (or leaked): done
    return True


def _tdcall_2m(vcpu: GuestRun, gpa: int) -> None:
    """tdg_mem_page_accept at 2M: the entry's guest-side lock, then the 4K chunks still to
    zero (the entry's accept counter keeps those done by an interrupted ACCEPT)."""
    sim = vcpu.sim
    t = sim.now
    fail = sim.locks.try_plan(_ACCEPT_PLAN, vcpu.i, gpa, False)
    vcpu.in_tdcall = True
    if fail is None:
        vcpu.hp_since = -1
        before = sim.accept_progress.get(gpa >> 9, 0)
        dur = (REGION_PAGES - before) * _chunk_ns(sim)
        vcpu.tdcall_end = t + dur
        # Its start, its record's index in the stream, the chunks done before it, its end
        # (compared by value: compiled, a tuple attribute is unboxed, so `is` would fail).
        token = (t, sim._base + len(sim._out), before, t + dur)
        vcpu.accepting_2m = token
        sim.emit((t, dur, TDCALL, vcpu.name, ACCEPT, 0, None, 1, SUCCESS,
                  {"level": "2M", "pages": REGION_PAGES - before}))
        sim.at(t + dur, _accepted_2m, (vcpu, gpa, token))
        return
    # As at 4K: the BUSY goes back to the guest, which accepts again (a new logical call);
    # kept busy by host priority past HP_LOCK_TIMEOUT, the module forces a TD exit.
    vcpu._tdcall_busy(ACCEPT, fail, gpa, {"level": "2M"})


def _chunk_ns(sim: Simulation) -> int:
    """One 4K chunk of a 2M ACCEPT."""
    return max(sim.timing.accept_2m_ns // REGION_PAGES, 1)


def interrupt_2m(vcpu: GuestRun) -> int:
    """An interrupt (a kick's IPI) is pending during a 2M ACCEPT: tdg_mem_page_accept
    checks IA32_INTR_PENDING after each 4K chunk (is_interrupt_pending_guest_side), so
    the TDCALL stops at the end of the current chunk with its progress in the entry's
    accept counter and the lock released; the guest resumes the ACCEPT after re-entry.
    Returns when the TDCALL now ends. Its record is still in the simulation's buffer
    (the vCPU's TDH.VP.ENTER record before it is open), so it is rewritten in place."""
    sim = vcpu.sim
    token = vcpu.accepting_2m
    assert token is not None
    start, index, before, _ = token
    chunk = _chunk_ns(sim)
    chunks = min((sim.now - start) // chunk + 1, REGION_PAGES - before)
    end = start + chunks * chunk
    if end >= vcpu.tdcall_end:
        return vcpu.tdcall_end
    vcpu.tdcall_end = end
    new_token = (start, index, before, end)
    vcpu.accepting_2m = new_token  # the completion event of the old token is void now
    at = index - sim._base
    record = sim._out[at]
    if record[0] != start or record[4] != ACCEPT:
        raise InvariantError(f"{vcpu.name}: the 2M ACCEPT record at {index} was handed out")
    sim._out[at] = (start, end - start, TDCALL, vcpu.name, ACCEPT, 0, None, 1, SUCCESS,
                    {"level": "2M", "pages": chunks, "interrupted": True})
    sim.at(end, _interrupted_2m, (vcpu, new_token, before + chunks))
    return end


def _interrupted_2m(arg: Any) -> None:
    vcpu, token, done = arg
    if vcpu.accepting_2m != token:
        return
    vcpu.accepting_2m = None
    sim = vcpu.sim
    op = vcpu.op
    assert op is not None
    gpa = op.gpas[0]
    sim.accept_progress[gpa >> 9] = done
    sim.locks.release_plan(_ACCEPT_PLAN, vcpu.i, gpa)
    vcpu.in_tdcall = False
    vcpu.kick_pending = False
    vcpu._exit(EXIT_EXTERNAL_INTERRUPT)  # the guest is still at its TDCALL


def _accepted_2m(arg: Any) -> None:
    vcpu, gpa, token = arg
    if vcpu.accepting_2m != token:
        return  # interrupted: _interrupted_2m ends it
    vcpu.accepting_2m = None
    sim = vcpu.sim
    sim.accept_progress.pop(gpa >> 9, None)
    pages = sim.pages
    for page in range(gpa, gpa + REGION_PAGES):
        if pages[page] == PENDING:
            pages[page] = ACCEPTED
    vcpu._accepted(gpa)
