"""The host zap thread: BLOCK, TRACK, kick, REMOVE of guest pages under mmu_lock write."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from engine.huge import (
    DEMOTE,
    HUGE_LEAVES,
    OP_BLOCK,
    OP_KICK,
    OP_REMOVE,
    OP_TRACK,
    demote_refused,
    done_2m,
    gave_up_2m,
    huge_op_due,
    plan,
)
from engine.pagebytes import ACCEPTED, BLOCKED, LEAKED, PENDING, UNMAPPED, find_either
from engine.policies import GIVE_UP, KICK_RETRY, KVM_BUG
from engine.records import BUSY, ERROR, GIVEUP, KICK, SEAMCALL, SUCCESS
from engine.records import KVM_BUG as KVM_BUG_RECORD
from engine.status import OPERAND_RCX, TDX_PREVIOUS_TLB_EPOCH_BUSY, TDX_TLB_TRACKING_NOT_DONE

if TYPE_CHECKING:
    from engine.sim import Simulation

BLOCK: Final = "TDH.MEM.RANGE.BLOCK"
TRACK: Final = "TDH.MEM.TRACK"
REMOVE: Final = "TDH.MEM.PAGE.REMOVE"
_WORK = {BLOCK: "range_block_ns", TRACK: "track_ns", REMOVE: "page_remove_ns",
         DEMOTE: "page_demote_ns"}


class Zapper:
    """Zaps batches of mapped pages, either every `interval_ns` from `start_ns` (a rate)
    or once per entry of `times_ns`; `ranges` limits it to GPA page ranges. A batch that
    covers part of a 2 MB mapping splits it first (engine.huge)."""

    def __init__(self, sim: Simulation, index: int, pages: int, interval_ns: int,
                 start_ns: int = 0, times_ns: tuple[int, ...] = (),
                 ranges: tuple[tuple[int, int], ...] = (), on_demand: bool = False) -> None:
        self.sim = sim
        self.name = f"zap{index}"
        self.batch_pages = pages
        self.interval_ns = interval_ns
        self.times_ns = sorted(times_ns)
        self.ranges = ranges or ((0, sim.layout.pages),)
        self.cursor = self.ranges[0][0]
        self.batch: list[int] = []
        self.ops: list[tuple[int, int]] = []  # the batch's operations (engine.huge.plan)
        self.step = 0
        self.level_2m = False  # the call in progress is at the 2 MB level (engine.huge)
        self.ignores_busy = False  # the v19-era split path (engine.huge.split_gave_up)
        self.leaf = ""
        self.attempt = 1
        self.batch_start = 0
        self.blocking = False
        self.holds_vmm = False
        self.on_demand = on_demand
        self.then: Callable[[], None] | None = None
        # An on-demand zapper is started batch by batch (zap_now); the others schedule theirs.
        if not on_demand and self.times_ns:
            for t in self.times_ns:
                sim.at(t, self._begin)
        elif not on_demand:
            sim.at(start_ns + interval_ns, self._begin)

    # -- choosing pages --------------------------------------------------------------
    def _pick(self) -> list[int]:
        """The next `batch_pages` mapped pages from the cursor on, wrapping round."""
        pages = self.sim.pages
        cursor = self.cursor
        segments = [(max(lo, cursor), hi) for lo, hi in self.ranges if hi > cursor]
        segments += [(lo, min(hi, cursor)) for lo, hi in self.ranges if lo < cursor]
        out: list[int] = []
        for lo, hi in segments:
            pos = lo
            while len(out) < self.batch_pages and pos < hi:
                pos = find_either(pages, ACCEPTED, PENDING, pos, hi)
                if pos < 0:
                    break
                out.append(pos)
                pos += 1
        if out:
            self.cursor = out[-1] + 1
        return sorted(out)

    def zap_now(self, then: Callable[[], None]) -> None:
        """One batch now (a memslot's flush); `then()` when it is done."""
        self.then = then
        self._begin(None)

    def _begin(self, _: Any) -> None:
        self.batch_start = self.sim.now
        self.sim.mmu_lock.acquire(True, self._locked)

    def _locked(self) -> None:
        self.batch = self._pick()
        if not self.batch:
            return self._finish()
        # With 2 MB leaves in the TD, a planned sequence (engine.huge); else the plain one.
        self.ops = plan(self.sim, self.batch) if self.sim.huge_leaves else []
        self.step = 0
        self._next()

    # -- the sequence: BLOCK each, TRACK, kick, REMOVE each ----------------------------
    def _next(self) -> None:
        if self.ops:
            return self._next_op()
        n = len(self.batch)
        pages = self.sim.pages
        # Pages whose BLOCK gave up are not removed: skip them in a loop (a batch may be
        # a whole memslot).
        while n + 2 <= self.step < 2 * n + 2 and pages[self.batch[self.step - n - 2]] != BLOCKED:
            self.step += 1
        step = self.step
        if step < n:
            self._call(BLOCK, self.batch[step])
        elif step == n:
            self._call(TRACK, 0)
        elif step == n + 1:
            self._kick(self._kicked)
        elif step < 2 * n + 2:
            self._call(REMOVE, self.batch[step - n - 2])
        else:
            self._finish()

    def _next_op(self) -> None:
        """The same sequence for a batch that touches 2 MB leaves: its (code, page)
        operations from engine.huge.plan, splits first."""
        ops = self.ops
        sim = self.sim
        while self.step < len(ops):
            code, page = ops[self.step]
            if code == OP_KICK:
                return self._kick(self._kicked)
            if code == OP_TRACK:
                return self._call(TRACK, 0)
            if code == OP_BLOCK:
                # A page still inside a 2 MB leaf (its split failed) has no 4K entry.
                if not sim.huge[page >> 9]:
                    return self._call(BLOCK, page)
            elif code == OP_REMOVE:
                if sim.pages[page] == BLOCKED and not sim.huge[page >> 9]:
                    return self._call(REMOVE, page)
            elif huge_op_due(self, code, page):
                return self._call(HUGE_LEAVES[code], page, True)
            self.step += 1
        self._finish()

    def _kicked(self, _: Any) -> None:
        self.step += 1
        self._next()

    def _finish(self) -> None:
        sim = self.sim
        sim.mmu_lock.release(True)
        if self.on_demand:
            then, self.then = self.then, None
            if then is not None:
                then()
        elif not self.times_ns:
            sim.at(max(sim.now, self.batch_start + self.interval_ns), self._begin)

    def _kick(self, then: Any) -> None:
        """kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE): IPI every vCPU and wait
        until each one in guest mode or entering it has left (at least `kick_ns`, the IPI
        round trip)."""
        sim = self.sim
        t = sim.now
        end = t + sim.timing.kick_ns
        for vcpu in sim.vcpus:
            end = max(end, vcpu.kick())
        sim.emit((t, end - t, KICK, self.name, None, None, None, None, None, None))
        sim.at(end, then)

    def _call(self, leaf: str, page: int, level_2m: bool = False) -> None:
        self.level_2m = level_2m
        self.leaf = leaf
        self.page = page
        self.attempt = 1
        if self.sim.policy.serialise_sept and leaf != TRACK:
            self.sim.vmm_mutex.acquire(self._vmm_granted)
        else:
            self._attempt(None)

    def _vmm_granted(self) -> None:
        self.holds_vmm = True
        self._attempt(None)

    def _attempt(self, _: Any) -> None:
        sim = self.sim
        timing = sim.timing
        leaf, page, attempt, t = self.leaf, self.page, self.attempt, sim.now
        if sim.injector is not None and sim.injector.zap_call(self):
            return  # engine.inject: the debug config's BUSY, handled as one out of the wrapper
        steps = sim.host_locks[leaf]
        fail = None
        if leaf == TRACK and any(v.in_guest and v.entry_epoch < sim.td_epoch for v in sim.vcpus):
            status, operand = TDX_PREVIOUS_TLB_EPOCH_BUSY, "TD_EPOCH"
        else:
            fail = sim.locks.try_acquire(steps, -1, page, True)
            if fail is None:
                if leaf == REMOVE and not self._tlb_tracked(page):
                    return self._module_error(steps, TDX_TLB_TRACKING_NOT_DONE | OPERAND_RCX)
                if leaf == DEMOTE:
                    refused = demote_refused(sim, page, self._tlb_tracked(page))
                    if refused:
                        return self._module_error(steps, refused)
                dur = timing.seamcall_ns + getattr(timing, _WORK[leaf])
                sim.emit((t, dur, SEAMCALL, self.name, leaf, 0, None, attempt, SUCCESS, None))
                sim.at(t + dur, self._done, steps)
                return
            status, operand = fail.status, fail.operand
        self.busy_returned(t, status, operand, sim.retry_max, None)

    def busy_returned(self, t: int, status: int, operand: str, retry_max: int,
                      extra: dict[str, Any] | None) -> None:
        """The call returned a BUSY `status`: what the policy does with it, given
        `retry_max` retries in the SEPT wrapper (0 for a BUSY the wrapper never retries)."""
        sim = self.sim
        timing = sim.timing
        leaf, attempt = self.leaf, self.attempt
        decision = sim.policy.zap_busy(leaf, status, attempt, retry_max, timing, sim.rng)
        retry = decision >= 0 or decision == KICK_RETRY
        sim.emit((t, timing.seamcall_ns, SEAMCALL, self.name, leaf, status, operand, attempt,
                  BUSY if retry else GIVEUP, extra))
        after = t + timing.seamcall_ns
        own_loop = leaf == TRACK and decision >= 0 and not sim.policy.own_loops_continue_call
        self.attempt = 1 if own_loop else attempt + 1
        if decision >= 0:
            sim.at(after + decision, self._attempt)
        elif decision == KICK_RETRY:
            sim.no_entry += 1
            self.blocking = True
            sim.at(after, self._kick_then_retry)
        else:
            if decision == KVM_BUG:
                sim.stats["kvm_bugs"] += 1
                sim.emit((t, 0, KVM_BUG_RECORD, self.name, leaf, None, None, None, None,
                          {"failed_status": "0x%016X" % status}))
            assert decision in (GIVE_UP, KVM_BUG)
            sim.at(after, self._gave_up)

    def _tlb_tracked(self, page: int) -> bool:
        """TDH.MEM.PAGE.REMOVE's TLB-tracking check: a TRACK succeeded after the page's
        BLOCK (the TD epoch moved past the blocking one) and no vCPU still runs in the
        guest with an epoch from before it."""
        sim = self.sim
        blocked = sim.block_epoch.get(page, sim.td_epoch)
        if sim.td_epoch <= blocked:
            return False
        return not any(v.record_open and v.entry_epoch <= blocked for v in sim.vcpus)

    def _module_error(self, steps: Any, status: int) -> None:
        """A failing status other than BUSY (outcome `error`): KVM_BUG_ON under every
        policy (tdx_sept_drop_private_spte, tdx_sept_split_private_spte); a blocked page
        stays blocked, leaked."""
        sim = self.sim
        t = sim.now
        sim.locks.release(steps, -1, self.page)
        sim.emit((t, sim.timing.seamcall_ns, SEAMCALL, self.name, self.leaf, status, None,
                  self.attempt, ERROR, None))
        sim.stats["kvm_bugs"] += 1
        sim.emit((t, 0, KVM_BUG_RECORD, self.name, self.leaf, None, None, None, None,
                  {"failed_status": "0x%016X" % status}))
        sim.at(t + sim.timing.seamcall_ns, self._gave_up)

    def _kick_then_retry(self, _: Any) -> None:
        self._kick(self._attempt)

    def _unblock(self) -> None:
        if self.blocking:
            self.blocking = False
            self.sim.unblock_entry()

    def _release_vmm(self) -> None:
        if self.holds_vmm:
            self.holds_vmm = False
            self.sim.vmm_mutex.release()

    def _done(self, steps: Any) -> None:
        sim = self.sim
        leaf, page = self.leaf, self.page
        sim.locks.release(steps, -1, page)
        self._release_vmm()
        self._unblock()
        if self.level_2m:
            done_2m(sim, leaf, page)
        elif leaf == BLOCK:
            sim.pages[page] = BLOCKED
            sim.block_epoch[page] = sim.td_epoch
        elif leaf == TRACK:
            sim.td_epoch += 1
        else:
            sim.pages[page] = UNMAPPED
            del sim.block_epoch[page]
        self.step += 1
        self._next()

    def _gave_up(self, _: Any) -> None:
        sim = self.sim
        self._release_vmm()
        self._unblock()
        if self.level_2m:
            gave_up_2m(sim, self.leaf, self.page)
        elif self.leaf == REMOVE:
            sim.pages[self.page] = LEAKED  # blocked for good: the host leaks it
            sim.block_epoch.pop(self.page, None)
            sim.stats["leaked_pages"] += 1
        self.step += 1
        self._next()
