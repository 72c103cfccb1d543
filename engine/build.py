"""Build time: TDH.MEM.PAGE.ADD of the initial image, TDR exclusive, before vCPUs run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.pagebytes import ACCEPTED
from engine.records import GIVEUP, SEAMCALL, SUCCESS

if TYPE_CHECKING:
    from engine.sim import Simulation

PAGE_ADD = "TDH.MEM.PAGE.ADD"


class Builder:
    """Adds `pages` image pages one after another, from the start of guest memory, then
    calls `on_done()`: KVM_TDX_FINALIZE_VM after the last TDH.MEM.PAGE.ADD released TDR,
    so the vCPUs' first TDH.VP.ENTER never meets the build's exclusive TDR."""

    def __init__(self, sim: Simulation, pages: int,
                 on_done: Callable[[], None] | None = None) -> None:
        self.sim = sim
        self.pages = pages
        self.on_done = on_done
        self.next_page = 0
        self.name = "build0"
        self.steps = sim.host_locks[PAGE_ADD]
        self.dur_ns = sim.timing.seamcall_ns + sim.timing.page_add_ns
        self.end_estimate_ns = pages * self.dur_ns
        sim.at(0, self._add)

    def _add(self, _: Any) -> None:
        sim = self.sim
        if self.next_page >= self.pages:
            if self.on_done is not None:
                self.on_done()
            return
        page = self.next_page
        fail = sim.locks.try_acquire(self.steps, -1, page, True)
        if fail is None:
            sim.emit((sim.now, self.dur_ns, SEAMCALL, self.name, PAGE_ADD, 0, None, 1, SUCCESS, None))
            sim.at(sim.now + self.dur_ns, self._added, page)
        else:
            sim.emit((sim.now, sim.timing.seamcall_ns, SEAMCALL, self.name, PAGE_ADD, fail.status,
                      fail.operand, 1, GIVEUP, None))
            sim.at(sim.now + sim.timing.seamcall_ns + sim.timing.reenter_gap_ns, self._add)

    def _added(self, page: int) -> None:
        sim = self.sim
        sim.locks.release(self.steps, -1, page)
        sim.pages[page] = ACCEPTED
        sim.regions[page >> 9] = 1
        self.next_page += 1
        self._add(None)
