"""The module's lock sets per leaf and version (engine.module), and their effect in runs."""

from __future__ import annotations

import pytest

from engine.config import Config
from engine.locks import OP_STATE, PAGE, SEPT_ENTRY, SEPT_TREE, TD_EPOCH, TDR, TDVPR, Step
from engine.module import (
    GUEST_LOCKS,
    SEPT_WRAPPED,
    VP_ENTER_BRIEF,
    VP_ENTER_BRIEF_ZERO_STEP,
    VP_ENTER_HELD,
    host_locks,
)
from engine.run import records, run
from engine.status import TDX_ERROR_SEPT_BUSY

SH, EX = False, True
AUG = "TDH.MEM.PAGE.AUG"


def shape(steps: tuple[Step, ...]) -> list[tuple[int, bool]]:
    return [(s.kind, s.exclusive) for s in steps]


# MODEL.md section 3, module 1.5 (fresh host pages, which nobody else can hold, left out).
TABLE_15 = {
    "TDH.MEM.PAGE.ADD": [(TDR, EX)],
    "TDH.MEM.SEPT.ADD": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, SH), (SEPT_ENTRY, EX)],
    "TDH.MEM.PAGE.AUG": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, SH), (SEPT_ENTRY, EX)],
    "TDH.MEM.RANGE.BLOCK": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, EX), (SEPT_ENTRY, EX)],
    "TDH.MEM.RANGE.UNBLOCK": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, EX), (SEPT_ENTRY, EX)],
    "TDH.MEM.PAGE.REMOVE": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, SH), (SEPT_ENTRY, EX),
                            (PAGE, EX)],
    "TDH.MEM.SEPT.REMOVE": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, EX), (SEPT_ENTRY, EX),
                            (PAGE, EX)],
    "TDH.MEM.TRACK": [(TDR, SH), (OP_STATE, SH), (TD_EPOCH, EX)],
    # intel/tdx-module tdh_mem_page_demote.c / tdh_mem_page_promote.c (TDX 1.5.01).
    "TDH.MEM.PAGE.DEMOTE": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, SH), (SEPT_ENTRY, EX)],
    "TDH.MEM.PAGE.PROMOTE": [(TDR, SH), (OP_STATE, SH), (SEPT_TREE, SH), (SEPT_ENTRY, EX),
                             (PAGE, EX)],
}


@pytest.mark.parametrize("leaf", sorted(TABLE_15))
def test_module_15_lock_sets_follow_the_model(leaf: str) -> None:
    """Each 1.5 host leaf takes MODEL.md's locks, in lock order, shared or exclusive as listed."""
    assert shape(host_locks("1.5")[leaf]) == TABLE_15[leaf]


def test_aug_takes_sept_tree_exclusive_in_10_shared_in_15() -> None:
    """AUG: SEPT tree exclusive in module 1.0, shared in 1.5, with operand id 0x92 either way."""
    tree_10 = [s for s in host_locks("1.0")[AUG] if s.kind == SEPT_TREE]
    tree_15 = [s for s in host_locks("1.5")[AUG] if s.kind == SEPT_TREE]
    assert tree_10 == [Step(SEPT_TREE, EX, 0x92)]
    assert tree_15 == [Step(SEPT_TREE, SH, 0x92)]


@pytest.mark.parametrize("leaf", ["TDH.MEM.PAGE.ADD", "TDH.MEM.PAGE.REMOVE", "TDH.MEM.SEPT.ADD"])
def test_module_10_serialises_every_sept_change(leaf: str) -> None:
    """Module 1.0 takes the SEPT tree exclusively in PAGE.ADD, PAGE.REMOVE and SEPT.ADD too."""
    assert (SEPT_TREE, EX) in shape(host_locks("1.0")[leaf])


def test_operand_ids_of_host_steps() -> None:
    """A BUSY names TDR as RDX (0x02), the entry as RCX (0x01), the tree 0x92, op-state 0xAC."""
    ids = {(s.kind, s.operand_id) for steps in host_locks("1.5").values() for s in steps}
    assert {(TDR, 0x02), (SEPT_ENTRY, 0x01), (SEPT_TREE, 0x92), (OP_STATE, 0xAC),
            (TD_EPOCH, 0xA9)} <= ids
    assert all(s.operand_id == TDX_ERROR_SEPT_BUSY & 0xFF
               for steps in host_locks("1.0").values() for s in steps if s.kind == SEPT_TREE)


def test_guest_leaves_take_the_entry_lock_only() -> None:
    """ACCEPT and ATTR.RD/WR take just the SEPT entry, exclusively, reported on RCX."""
    assert set(GUEST_LOCKS) == {"TDG.MEM.PAGE.ACCEPT", "TDG.MEM.PAGE.ATTR.RD",
                                "TDG.MEM.PAGE.ATTR.WR"}
    for steps in GUEST_LOCKS.values():
        assert steps == (Step(SEPT_ENTRY, EX, 0x01),)


def test_vp_enter_lock_sets() -> None:
    """VP.ENTER holds TDR (0x80) and TDVPR (0x82) shared; the tree exclusively only when the
    zero-step filter fires."""
    assert VP_ENTER_HELD == (Step(TDR, SH, 0x80), Step(TDVPR, SH, 0x82))
    assert (SEPT_TREE, EX) not in shape(VP_ENTER_BRIEF)
    assert shape(VP_ENTER_BRIEF_ZERO_STEP) == [(OP_STATE, SH), (SEPT_TREE, EX), (TD_EPOCH, SH)]


def test_wrapped_leaves_are_the_seed_patchs() -> None:
    """The bounded wrapper covers PAGE.ADD, SEPT.ADD, AUG, BLOCK, REMOVE, UNBLOCK, and the
    v19-era large-page series' DEMOTE (tdx_seamcall_sept); not TRACK."""
    assert SEPT_WRAPPED == {"TDH.MEM.PAGE.ADD", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG",
                            "TDH.MEM.RANGE.BLOCK", "TDH.MEM.PAGE.REMOVE",
                            "TDH.MEM.RANGE.UNBLOCK", "TDH.MEM.PAGE.DEMOTE"}


def test_boot_32_vcpus_module_10_hits_sept_tree_busy_early() -> None:
    """boot, 32 vCPUs, module 1.0: a BUSY|SEPT_TREE (0x8000020000000092) within 20 ms."""
    config = Config(scenario="boot", vcpus=32, module_version="1.0")
    first = next((r for r in records(config, None, 20_000_000)
                  if r[6] == "SEPT_TREE" and r[5] == TDX_ERROR_SEPT_BUSY), None)
    assert first is not None and first[0] < 20_000_000


def test_boot_32_vcpus_module_15_far_fewer_sept_tree_busy() -> None:
    """boot, 32 vCPUs, first 5 ms: module 1.5 has far fewer SEPT_TREE BUSY than 1.0 (>= 10x)."""
    end = 5_000_000
    old = run(Config(scenario="boot", vcpus=32, module_version="1.0"), None, end)
    new = run(Config(scenario="boot", vcpus=32, module_version="1.5"), None, end)
    assert old["busy_by_operand"]["SEPT_TREE"] > 100
    assert new["busy_by_operand"]["SEPT_TREE"] * 10 <= old["busy_by_operand"]["SEPT_TREE"]


def test_host_priority_timeout_forces_a_td_exit() -> None:
    """Module 1.5: a guest kept on BUSY_HOST_PRIORITY longer than HP_LOCK_TIMEOUT is forced
    out with 0x9000020500000000; once the host wins, the guest's ACCEPT succeeds."""
    from engine.export import jsonl_lines
    from engine.guest import ACCEPT, Op
    from engine.module import GUEST_LOCKS
    from engine.pagebytes import ACCEPTED, PENDING
    from engine.params import Timing
    from engine.sim import Simulation
    from tests.engine.support import InlineScenario, io_exit, parse_jsonl

    gpa, timeout_ns = 2048, 20_000
    guest_hold, aug = GUEST_LOCKS["TDG.MEM.PAGE.ACCEPT"], host_locks("1.5")[AUG]
    scenario = InlineScenario([[Op(0, ACCEPT, 0x100, (gpa,)), io_exit(0x200)]],
                              timing=Timing(hp_lock_timeout_ns=timeout_ns))
    sim = Simulation(Config(scenario="inline", vcpus=1, policy="none"), scenario)
    recs: list = []
    hp_set_at = hp_cleared_at = -1
    while sim.now < 200_000:
        recs += sim.run_until(sim.now + 100)
        if hp_set_at < 0 and sim.pages[gpa] == PENDING:
            # Another vCPU's ACCEPT holds the entry while a host AUG fails on it: HP is set.
            assert sim.locks.try_acquire(guest_hold, 0, gpa, False) is None
            assert sim.locks.try_acquire(aug, 0, gpa, True).status == 0x8000020000000001
            sim.locks.release(guest_hold, 0, gpa)
            hp_set_at = sim.now
        elif hp_cleared_at < 0 and sim.now >= 100_000:
            assert sim.locks.try_acquire(aug, 0, gpa, True) is None  # the host wins
            sim.locks.release(aug, 0, gpa)
            hp_cleared_at = sim.now
    recs += sim.finish()
    log = parse_jsonl("".join(jsonl_lines(recs)))
    accepts = [r for r in log if r["leaf"] == "TDG.MEM.PAGE.ACCEPT" and r["kind"] == "tdcall"]
    backed_off = [r for r in accepts if r["t_ns"] < hp_cleared_at]
    assert backed_off and all(
        (r["status"], r["operand"], r["outcome"]) == ("0x8000020400000001", "SEPT_ENTRY", "giveup")
        for r in backed_off)
    timeouts = [r for r in log if r["kind"] == "hp_timeout"]
    assert timeouts
    first_busy = backed_off[0]["t_ns"]
    assert timeout_ns <= timeouts[0]["t_ns"] - first_busy < timeout_ns + 2 * 1_200
    forced = [r for r in log if r["leaf"] == "TDH.VP.ENTER" and r["outcome"] == "error"]
    assert forced and all(r["status"] == "0x9000020500000000" for r in forced)
    assert forced[0]["t_ns"] < timeouts[0]["t_ns"] < forced[0]["t_ns"] + forced[0]["dur_ns"]
    assert sim.stats["hp_timeouts"] == len(timeouts)
    after = [r for r in accepts if r["t_ns"] >= hp_cleared_at]
    assert after[0]["outcome"] == "success" and sim.pages[gpa] == ACCEPTED
