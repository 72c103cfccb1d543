"""Exact tests of the module's try-locks (engine.locks.LockTable) with real leaf lock sets."""

from __future__ import annotations

import pytest

from engine.errors import InvariantError
from engine.locks import (
    GPA_EXCLUSIVE,
    OP_STATE,
    SEPT_ENTRY,
    SEPT_TREE,
    TD_EPOCH,
    TDR,
    Failure,
    LockTable,
    Step,
)
from engine.module import GUEST_LOCKS, VP_ENTER_HELD, host_locks
from engine.status import OPERAND_RCX, TDX_ERROR_SEPT_BUSY, TDX_OPERAND_BUSY

AUG = "TDH.MEM.PAGE.AUG"
BLOCK = "TDH.MEM.RANGE.BLOCK"
PAGE_ADD = "TDH.MEM.PAGE.ADD"
REMOVE = "TDH.MEM.PAGE.REMOVE"
TRACK = "TDH.MEM.TRACK"
ACCEPT = GUEST_LOCKS["TDG.MEM.PAGE.ACCEPT"]
GPA_A, GPA_B = 0x1000, 0x2000
PAGES = 0x4000  # guest pages of the tables' TD
HOST, GUEST = True, False


def table(version: str = "1.5", vcpus: int = 4) -> tuple[LockTable, dict[str, tuple]]:
    return LockTable(vcpus, version == "1.5", PAGES), host_locks(version)


def test_shared_plus_shared_succeed() -> None:
    """Two AUGs on different GPAs hold the SEPT tree shared together (module 1.5)."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(sets[AUG], 1, GPA_B, HOST) is None
    assert locks.td[SEPT_TREE] == 2 and locks.td[TDR] == 2 and locks.td[OP_STATE] == 2
    locks.release(sets[AUG], 0, GPA_A)
    locks.release(sets[AUG], 1, GPA_B)
    assert locks.idle()


def test_exclusive_vs_shared_is_sept_tree_busy() -> None:
    """BLOCK (tree exclusive) while an AUG holds the tree shared: exactly 0x8000020000000092."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    fail = locks.try_acquire(sets[BLOCK], -1, GPA_B, HOST)
    assert fail == Failure("SEPT_TREE", 0x8000020000000092)
    assert fail.status == TDX_ERROR_SEPT_BUSY


def test_shared_vs_exclusive_is_sept_tree_busy() -> None:
    """AUG (tree shared) while a BLOCK holds the tree exclusively: 0x8000020000000092."""
    locks, sets = table()
    assert locks.try_acquire(sets[BLOCK], -1, GPA_B, HOST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) == Failure("SEPT_TREE", 0x8000020000000092)
    locks.release(sets[BLOCK], -1, GPA_B)
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None


def test_track_vs_track_is_td_epoch_busy() -> None:
    """A second TRACK while one holds the TD epoch exclusively: 0x80000200000000A9."""
    locks, sets = table()
    assert locks.try_acquire(sets[TRACK], -1, 0, HOST) is None
    assert locks.try_acquire(sets[TRACK], -1, 0, HOST) == Failure("TD_EPOCH", 0x80000200000000A9)


def test_page_add_vs_running_vcpu_is_tdr_busy_rdx() -> None:
    """PAGE.ADD (TDR exclusive) while a vCPU runs (TDR shared): BUSY on RDX, 0x8000020000000002."""
    locks, sets = table()
    assert locks.try_acquire(VP_ENTER_HELD, 0, 0, HOST) is None
    assert locks.try_acquire(sets[PAGE_ADD], -1, GPA_A, HOST) == Failure("TDR", 0x8000020000000002)


def test_vp_enter_vs_page_add_is_tdr_busy_0x80() -> None:
    """TDH.VP.ENTER while PAGE.ADD holds TDR exclusively: 0x8000020000000080 on TDR."""
    locks, sets = table()
    assert locks.try_acquire(sets[PAGE_ADD], -1, GPA_A, HOST) is None
    assert locks.try_acquire(VP_ENTER_HELD, 0, 0, HOST) == Failure("TDR", 0x8000020000000080)


def test_failure_at_a_later_lock_releases_the_earlier_ones() -> None:
    """An AUG that fails at the SEPT entry leaves TDR, op-state and the tree free."""
    locks, sets = table("1.0")
    assert locks.try_acquire(ACCEPT, 0, GPA_A, GUEST) is None
    fail = locks.try_acquire(sets[AUG], 1, GPA_A, HOST)
    assert fail == Failure("SEPT_ENTRY", 0x8000020000000001)
    assert locks.td == [0, 0, 0, 0]
    # Everything the failed AUG touched can now be taken exclusively by someone else.
    assert locks.try_acquire(sets[PAGE_ADD], -1, GPA_B, HOST) is None
    locks.release(sets[PAGE_ADD], -1, GPA_B)
    assert locks.try_acquire(sets[BLOCK], -1, GPA_B, HOST) is None


def test_failure_at_the_tree_releases_tdr_and_op_state() -> None:
    """A BLOCK refused at the SEPT tree holds no TDR or op-state reference afterwards."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(sets[BLOCK], -1, GPA_B, HOST) is not None
    assert locks.td == [1, 1, 1, 0]
    assert locks.entry[GPA_B] == 0
    locks.release(sets[AUG], 0, GPA_A)
    assert locks.idle()


def test_guest_accept_vs_host_aug_on_one_entry() -> None:
    """A guest ACCEPT on an entry an AUG holds gets plain BUSY on RCX and sets no HP."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) == Failure("SEPT_ENTRY", 0x8000020000000001)
    assert locks.entry_hp == set()
    locks.release(sets[AUG], 0, GPA_A)
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None


def test_host_aug_vs_guest_accept_on_one_entry() -> None:
    """An AUG on an entry a guest ACCEPT holds gets 0x8000020000000001 (SEPT entry, RCX)."""
    locks, sets = table()
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) == Failure("SEPT_ENTRY", 0x8000020000000001)
    # Another GPA's entry is independent.
    assert locks.try_acquire(sets[AUG], 0, GPA_B, HOST) is None


def test_host_priority_guest_backs_off_and_host_wins_retry() -> None:
    """Module 1.5: host fails on a guest-held entry -> HP set; the guest then backs off with
    BUSY_HOST_PRIORITY on a free lock; the host's retry wins and clears HP."""
    locks, sets = table("1.5")
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) == Failure("SEPT_ENTRY", 0x8000020000000001)
    assert GPA_A in locks.entry_hp
    locks.release(ACCEPT, 1, GPA_A)
    assert locks.idle()
    # The lock is free, but HP is set: the guest backs off.
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) == Failure("SEPT_ENTRY", 0x8000020400000001)
    assert locks.idle()
    # The host's retry wins and clears HP.
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.entry_hp == set() and locks.hp_count == 0
    locks.release(sets[AUG], 0, GPA_A)
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None


def test_host_priority_is_per_entry() -> None:
    """HP set on one GPA's entry does not make a guest back off on another GPA."""
    locks, sets = table("1.5")
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is not None
    assert locks.try_acquire(ACCEPT, 2, GPA_B, GUEST) is None


def test_module_10_has_no_host_priority() -> None:
    """Module 1.0: after a host BUSY on a guest-held entry, the guest's next ACCEPT succeeds."""
    locks, sets = table("1.0")
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) == Failure("SEPT_ENTRY", 0x8000020000000001)
    assert locks.entry_hp == set()
    locks.release(ACCEPT, 1, GPA_A)
    assert locks.try_acquire(ACCEPT, 1, GPA_A, GUEST) is None


def test_host_priority_does_not_apply_to_sept_tree() -> None:
    """HP does not help against another host holder of the SEPT tree: no HP bit, plain BUSY."""
    locks, sets = table("1.5")
    assert locks.try_acquire(sets[BLOCK], -1, GPA_B, HOST) is None
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) == Failure("SEPT_TREE", TDX_ERROR_SEPT_BUSY)
    assert locks.hp_count == 0


def test_release_of_a_lock_not_held_raises() -> None:
    """Releasing a lock set nobody holds is a broken invariant, never silently ignored."""
    locks, sets = table()
    with pytest.raises(InvariantError):
        locks.release(sets[AUG], 0, GPA_A)


def test_module_10_two_augs_collide_on_the_tree_15_do_not() -> None:
    """Two AUGs on different GPAs: BUSY|SEPT_TREE under module 1.0, both succeed under 1.5."""
    locks, sets = table("1.0")
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(sets[AUG], 1, GPA_B, HOST) == Failure("SEPT_TREE", 0x8000020000000092)
    locks, sets = table("1.5")
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(sets[AUG], 1, GPA_B, HOST) is None


def test_lock_order_names_the_first_conflict() -> None:
    """With the tree and the entry both taken, a BLOCK reports the tree (earlier in lock order)."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.try_acquire(sets[BLOCK], -1, GPA_A, HOST) == Failure("SEPT_TREE", 0x8000020000000092)


def test_td_epoch_not_touched_by_sept_leaves() -> None:
    """AUG and BLOCK leave the TD epoch lock alone, so TRACK runs beside an AUG."""
    locks, sets = table()
    assert locks.try_acquire(sets[AUG], 0, GPA_A, HOST) is None
    assert locks.td[TD_EPOCH] == 0
    assert locks.try_acquire(sets[TRACK], -1, 0, HOST) is None


def test_a_per_gpa_lock_shared_and_exclusive_on_its_byte() -> None:
    """A SEPT entry taken shared by many holders blocks an exclusive taker until the last
    one releases; past 254 holders (a byte per page) the table refuses loudly."""
    shared = (Step(SEPT_ENTRY, False, OPERAND_RCX),)
    exclusive = (Step(SEPT_ENTRY, True, OPERAND_RCX),)
    locks, _ = table()
    for _ in range(GPA_EXCLUSIVE - 1):
        assert locks.try_acquire(shared, 0, GPA_A, HOST) is None
    assert locks.try_acquire(exclusive, 1, GPA_A, GUEST) == Failure("SEPT_ENTRY", TDX_OPERAND_BUSY | OPERAND_RCX)
    with pytest.raises(InvariantError, match="more than 254 holders share SEPT_ENTRY of page 0x1000"):
        locks.try_acquire(shared, 0, GPA_A, HOST)
    for _ in range(GPA_EXCLUSIVE - 1):
        locks.release(shared, 0, GPA_A)
    assert locks.idle()
    assert locks.try_acquire(exclusive, 1, GPA_A, GUEST) is None
    assert locks.try_acquire(shared, 0, GPA_A, HOST) is not None
    locks.release(exclusive, 1, GPA_A)
    assert locks.idle()
