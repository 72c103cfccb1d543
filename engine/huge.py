"""2 MB private mappings: the guest's ACCEPT at 2M, KVM's AUG at 2M, and the split (DEMOTE).

A 2 MB leaf is one byte per region in `sim.huge` (engine.pagebytes: HUGE, HUGE_BLOCKED);
its 512 page bytes keep ordinary page states, so the guest, the zero-step filter and the
zap path read pages as they always do.

- The guest accepts at 2M (`accept` step with `level = "2M"`, Linux's try_accept_one at
  PG_LEVEL_2M; engine.accept2m): TDG.MEM.PAGE.ACCEPT of the 2 MB entry, guest-side entry
  lock; an exit to
  KVM when nothing maps the region, and KVM's fault maps it with one TDH.MEM.PAGE.AUG at
  the 2M level (tdx_sept_set_private_spte with level PG_LEVEL_2M, Yan Zhao's 2025 TDX
  huge-page series), freezing the one SPTE that maps the region. The ACCEPT zeroes 512
  chunks of 4K and stops at the end of a chunk when an interrupt is pending
  (tdg_mem_page_accept), keeping its progress in the entry's accept counter.
- A zap of part of a 2 MB mapping splits it first, as the series does under mmu_lock
  write (tdp_mmu_split_huge_page -> tdx_sept_split_private_spte): TDH.MEM.RANGE.BLOCK of
  the 2 MB entry, TDH.MEM.TRACK and the kick (tdx_track), then TDH.MEM.PAGE.DEMOTE, which
  leaves 512 unblocked 4K entries (tdh_mem_page_demote: sept_unblock of the children; "no
  UNBLOCK is needed after a successful DEMOTE"); then the 4K zap of the part. A zap that
  covers the whole 2 MB removes it at 2M (BLOCK, TRACK, kick, REMOVE at PG_LEVEL_2M).
- TDH.MEM.PAGE.DEMOTE checks (tdh_mem_page_demote, TDX 1.5.01) that the 2 MB entry is
  blocked (else TDX_GPA_RANGE_NOT_BLOCKED) and TLB-tracked (else
  TDX_TLB_TRACKING_NOT_DONE), both reported on RCX.
- The v19-era split (`demote_ignores_busy` on a [[zap]]): __set_private_spte_present
  took the -EAGAIN of a BUSY BLOCK (tdx_sept_zap_private_spte) or DEMOTE and went on as if
  the split had happened (canonical/tdx#100, #213): DEMOTE runs after a BLOCK that did not
  happen, and the module refuses it.
- TDH.MEM.PAGE.PROMOTE is not modelled: the 2025 series splits only (its split patch has
  no merge path). The 2023 large-page series (Isaku Yamahata, v6/v7,
  tdx_sept_merge_private_spt) merged in the fault path with BLOCK, a TLB flush and
  PROMOTE, backing off with -EAGAIN and UNBLOCK while some sub-pages were still PENDING
  (TDX_EPT_INVALID_PROMOTE_CONDITIONS); no scenario here issues it, and its lock set is in
  engine.module only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.pagebytes import (
    BLOCKED,
    HUGE,
    HUGE_BLOCKED,
    LEAKED,
    NOT_HUGE,
    PENDING,
    UNMAPPED,
    fill,
)
from engine.status import (
    OPERAND_RCX,
    TDX_GPA_RANGE_NOT_BLOCKED,
    TDX_TLB_TRACKING_NOT_DONE,
)

if TYPE_CHECKING:
    from engine.script import Checker
    from engine.sim import Simulation
    from engine.zap import Zapper

REGION_PAGES: Final = 512
LEVEL_2M: Final = 1  # an ACCEPT Op's `arg`: the guest accepts the 2 MB page
DEMOTE: Final = "TDH.MEM.PAGE.DEMOTE"
PROMOTE: Final = "TDH.MEM.PAGE.PROMOTE"

# A zap batch's operations, (code, page) pairs (plan below; engine.zap runs them).
OP_BLOCK: Final = 0
OP_TRACK: Final = 1
OP_KICK: Final = 2
OP_REMOVE: Final = 3
OP_BLOCK_2M: Final = 4
OP_DEMOTE: Final = 5
OP_REMOVE_2M: Final = 6
HUGE_LEAVES: dict[int, str] = {OP_BLOCK_2M: "TDH.MEM.RANGE.BLOCK", OP_DEMOTE: DEMOTE,
                               OP_REMOVE_2M: "TDH.MEM.PAGE.REMOVE"}


# -- the scenario format ----------------------------------------------------------------
def accept_level(raw: dict[str, Any], path: str, check: Checker,
                 span: tuple[int, int]) -> tuple[int, int] | None:
    """An `accept` step's `level`: "4K" (the default) or "2M", which needs a 2 MB-aligned
    `gpa` whose 512 pages are inside guest memory; a 2M accept spans its 512 pages."""
    level = raw["level"]
    if level == "4K":
        return span
    if level != "2M":
        check.err(f"{path}.level", f"{level!r}; accepted: \"4K\" or \"2M\"")
        return None
    lo = span[0]
    if lo % REGION_PAGES:
        check.err(f"{path}.gpa", f"{lo << 12:#x} is not 2 MB-aligned; accepted with level "
                                 f"\"2M\": a multiple of 0x200000")
        return None
    if lo + REGION_PAGES > check.memory_pages:
        check.err(f"{path}.gpa", f"{lo << 12:#x} + 2 MB ends beyond the guest's memory")
        return None
    return lo, lo + REGION_PAGES


# -- the zap path ------------------------------------------------------------------------
def plan(sim: Simulation, batch: list[int]) -> list[tuple[int, int]]:
    """The operations of a zap batch: a split (BLOCK 2M, TRACK, kick, DEMOTE) for each
    2 MB leaf the batch covers in part, then BLOCK of each page (and of each 2 MB leaf it
    covers whole), TRACK, kick, REMOVE of each."""
    huge = sim.huge
    touched: dict[int, int] = {}
    for page in batch:
        region = page >> 9
        if huge[region] == HUGE:
            touched[region] = touched.get(region, 0) + 1
    whole = [r for r, n in touched.items() if n == REGION_PAGES]
    ops: list[tuple[int, int]] = []
    for region, n in touched.items():
        if n < REGION_PAGES:
            base = region << 9
            ops += [(OP_BLOCK_2M, base), (OP_TRACK, 0), (OP_KICK, 0), (OP_DEMOTE, base)]
    small = [p for p in batch if not whole or (p >> 9) not in whole]
    ops += [(OP_BLOCK_2M, r << 9) for r in whole]
    ops += [(OP_BLOCK, p) for p in small]
    ops += [(OP_TRACK, 0), (OP_KICK, 0)]
    ops += [(OP_REMOVE_2M, r << 9) for r in whole]
    ops += [(OP_REMOVE, p) for p in small]
    return ops


def huge_op_due(zapper: Zapper, code: int, page: int) -> bool:
    """Whether a 2M operation of the plan still applies: BLOCK to a mapped 2 MB leaf,
    DEMOTE and REMOVE to a blocked one (DEMOTE also to an unblocked one when the v19-era
    path ignored its BLOCK's BUSY)."""
    state = zapper.sim.huge[page >> 9]
    if code == OP_BLOCK_2M:
        return state == HUGE
    if code == OP_DEMOTE:
        return state == HUGE_BLOCKED or (zapper.ignores_busy and state == HUGE)
    return state == HUGE_BLOCKED


def demote_refused(sim: Simulation, page: int, tracked: bool) -> int:
    """tdh_mem_page_demote's state checks once its locks are held: 0, or its error."""
    if sim.huge[page >> 9] != HUGE_BLOCKED:
        return TDX_GPA_RANGE_NOT_BLOCKED | OPERAND_RCX
    if not tracked:
        return TDX_TLB_TRACKING_NOT_DONE | OPERAND_RCX
    return 0


def done_2m(sim: Simulation, leaf: str, page: int) -> None:
    """A 2M-level BLOCK, DEMOTE or REMOVE succeeded: the region's new state."""
    region = page >> 9
    pages = sim.pages
    if leaf == DEMOTE:
        # 512 unblocked 4K entries in a new SEPT page, each in its state before the BLOCK.
        saved = sim.huge_saved.pop(region)
        for k in range(REGION_PAGES):
            pages[page + k] = saved[k]
        sim.huge[region] = NOT_HUGE
        sim.huge_leaves -= 1
        sim.regions[region] = 1
        del sim.block_epoch[page]
        sim.accept_progress.pop(region, None)  # sept_cleanup_if_pending: counters cleared
    elif leaf == "TDH.MEM.RANGE.BLOCK":
        sim.huge_saved[region] = memoryview(pages)[page:page + REGION_PAGES].tobytes()
        fill(pages, page, page + REGION_PAGES, BLOCKED)
        sim.huge[region] = HUGE_BLOCKED
        sim.block_epoch[page] = sim.td_epoch
    else:  # REMOVE at 2M
        fill(pages, page, page + REGION_PAGES, UNMAPPED)
        sim.huge[region] = NOT_HUGE
        sim.huge_leaves -= 1
        sim.huge_saved.pop(region, None)
        sim.accept_progress.pop(region, None)
        del sim.block_epoch[page]


def gave_up_2m(sim: Simulation, leaf: str, page: int) -> None:
    """A 2M-level call failed for good. A BLOCK that failed leaves the 2 MB leaf mapped
    (the split did not happen; its pages are left out of the batch). A blocked 2 MB leaf
    whose DEMOTE or REMOVE failed stays blocked for good: KVM leaks its 512 pages."""
    region = page >> 9
    if sim.huge[region] != HUGE_BLOCKED:
        return
    fill(sim.pages, page, page + REGION_PAGES, LEAKED)
    sim.huge_saved.pop(region, None)
    sim.block_epoch.pop(page, None)
    sim.stats["leaked_pages"] += REGION_PAGES


# -- the fault path ----------------------------------------------------------------------
def mapped_2m(sim: Simulation, page: int) -> None:
    """TDH.MEM.PAGE.AUG at 2M succeeded: 512 PENDING pages under one leaf."""
    fill(sim.pages, page, page + REGION_PAGES, PENDING)
    sim.huge[page >> 9] = HUGE
    sim.huge_leaves += 1
