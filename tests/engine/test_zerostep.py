"""The zero-step filter (engine.zerostep) alone and inside a running Simulation."""

from __future__ import annotations

from typing import Any

from engine.config import Config
from engine.export import jsonl_lines
from engine.locks import SEPT_TREE, Step
from engine.module import GUEST_LOCKS
from engine.sim import Simulation
from engine.status import TDX_ERROR_SEPT_BUSY
from engine.zerostep import MAX_GPAS, THRESHOLD, ZeroStepFilter
from tests.engine.support import InlineScenario, access, io_exit, parse_jsonl, run_records

RIP, OTHER_RIP = 0x1000, 0x2000
BASE = 3 * 512  # first page of a fresh SEPT region
TREE_SH = (Step(SEPT_TREE, False, 0x92),)


def armed_after(exits: int) -> ZeroStepFilter:
    f = ZeroStepFilter()
    f.on_entry(RIP)
    for i in range(exits):
        f.on_ept_exit(RIP, 100 + i)
    return f


# -- the filter alone ----------------------------------------------------------------

def test_threshold_is_six() -> None:
    """The published threshold: 2 instruction-fetch faults + 2 per operand for 2 operands."""
    assert THRESHOLD == 6 and MAX_GPAS == 32


def test_six_exits_at_one_rip_arm_nothing() -> None:
    """Six EPT exits at one RIP raise the counter to 6 and log no GPA."""
    f = ZeroStepFilter()
    f.on_entry(RIP)
    changes = [f.on_ept_exit(RIP, 100 + i) for i in range(6)]
    assert changes == [0] * 6
    assert f.counter == 6 and f.gpas == [] and not f.armed


def test_seventh_exit_logs_the_gpa_and_arms() -> None:
    """The seventh exit at one RIP logs its GPA and arms the filter (+1 once)."""
    f = armed_after(6)
    assert f.on_ept_exit(RIP, 777) == 1
    assert f.gpas == [777] and f.armed
    assert f.on_ept_exit(RIP, 778) == 0
    assert f.gpas == [777, 778]


def test_first_exit_counts_as_one() -> None:
    """An exit at a RIP other than the entry RIP resets, then counts as exit 1 at its RIP."""
    f = ZeroStepFilter()
    assert f.on_ept_exit(RIP, 1) == 0
    assert f.counter == 1
    f.on_entry(RIP)
    for i in range(5):
        f.on_ept_exit(RIP, 2 + i)
    assert f.counter == 6 and not f.armed
    assert f.on_ept_exit(RIP, 99) == 1


def test_rip_change_resets_counter_and_list() -> None:
    """An exit at a RIP other than the last entry's clears the list and restarts the count."""
    f = armed_after(8)
    assert len(f.gpas) == 2
    f.on_entry(RIP)
    assert f.on_ept_exit(OTHER_RIP, 5000) == -1
    assert f.gpas == [] and f.counter == 1 and not f.armed


def test_rip_change_before_arming_restarts_the_count() -> None:
    """Five exits at one RIP, then one elsewhere: six more are needed before a GPA is logged."""
    f = armed_after(5)
    f.on_entry(RIP)
    f.on_ept_exit(OTHER_RIP, 1)
    f.on_entry(OTHER_RIP)
    for i in range(5):
        assert f.on_ept_exit(OTHER_RIP, 10 + i) == 0
    assert not f.armed
    assert f.on_ept_exit(OTHER_RIP, 99) == 1


def test_same_rip_as_entry_does_not_reset() -> None:
    """Exits at the entry RIP keep the list: it is cleared only by an exit at another RIP."""
    f = armed_after(7)
    for _ in range(3):
        f.on_entry(RIP)
        f.on_ept_exit(RIP, 777)
    assert f.gpas == [106, 777]  # the 7th exit's GPA, then 777 once (deduplicated)
    assert f.armed and f.counter == THRESHOLD


def test_list_dedups_and_caps_at_32() -> None:
    """Logged GPAs are deduplicated and at most 32 are kept."""
    f = armed_after(6)
    for gpa in list(range(1000, 1040)) + [1000, 1001]:
        f.on_ept_exit(RIP, gpa)
    assert f.gpas == list(range(1000, 1032))
    assert len(set(f.gpas)) == len(f.gpas) == MAX_GPAS
    f2 = armed_after(6)
    for _ in range(5):
        f2.on_ept_exit(RIP, 42)
    assert f2.gpas == [42]


# -- inside a Simulation -------------------------------------------------------------

def simulate(ops: list[Any], zero_step: bool = True, policy: str = "none",
             hook: Any = None, end_ns: int = 2_000_000) -> list[dict[str, Any]]:
    """Run one scripted vCPU; `hook(sim, records_so_far)` runs after every 500 ns slice."""
    sim = Simulation(Config(scenario="inline", vcpus=1, policy=policy, zero_step=zero_step),
                     InlineScenario([ops]))
    recs: list[Any] = []
    while sim.now < end_ns:
        recs += sim.run_until(sim.now + 500)
        if hook is not None:
            hook(sim, recs)
    recs += sim.finish()
    return parse_jsonl("".join(jsonl_lines(recs)))


def kinds(log: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [r for r in log if r["kind"] in names]


def test_sim_six_faults_at_one_rip_arm_nothing() -> None:
    """One instruction faulting on 6 fresh GFNs: no zero_step_armed and no zero_step record."""
    log = simulate([access(RIP, *range(BASE, BASE + 6)), io_exit(OTHER_RIP)])
    ept = [r for r in log if r["leaf"] == "TDH.VP.ENTER" and r["status"] == "0x0000000000000030"]
    assert len(ept) == 6
    assert kinds(log, "zero_step", "zero_step_armed") == []


def test_sim_seventh_fault_arms_and_next_enter_takes_tree_exclusive() -> None:
    """The 7th fault at one RIP logs its GPA; the next VP.ENTER emits zero_step and holds the
    SEPT tree exclusively until VM entry."""
    seen: dict[str, Any] = {}

    def hook(sim: Simulation, recs: list[Any]) -> None:
        if "tree" not in seen and any(r[2] == "zero_step" for r in recs):
            seen["tree"] = sim.locks.td[SEPT_TREE]
            seen["entering"] = sim.vcpus[0].entering

    log = simulate([access(RIP, *range(BASE, BASE + 7)), io_exit(OTHER_RIP)], hook=hook)
    armed = kinds(log, "zero_step_armed")
    assert len(armed) == 1
    assert armed[0]["gpa"] == hex((BASE + 6) << 12) and armed[0]["rip"] == hex(RIP)
    # Exits 1..7 came before the armed record; no VP.ENTER tried the lock before it.
    first = log.index(kinds(log, "zero_step")[0])
    assert first > log.index(armed[0])
    enter = log[first + 1]
    assert enter["leaf"] == "TDH.VP.ENTER" and enter["t_ns"] == log[first]["t_ns"]
    assert enter["outcome"] == "success"
    assert log[first]["actor"] == "vcpu0"
    # Observed within 500 ns of the zero_step record: the tree is held exclusively (-1).
    assert seen == {"tree": -1, "entering": True}


def test_sim_armed_list_persists_across_io_exits() -> None:
    """Once armed, every later VP.ENTER (after IO exits too) fires again until a counted
    exit at another RIP disarms it."""
    log = simulate([access(RIP, *range(BASE, BASE + 7)), io_exit(0x3000), io_exit(0x4000),
                    access(0x5000, BASE + 100), io_exit(0x6000)])
    enters_after_arm = []
    armed_at = log.index(kinds(log, "zero_step_armed")[0])
    disarmed = kinds(log, "zero_step_disarmed")
    assert len(disarmed) == 1 and disarmed[0]["rip"] == hex(0x5000)
    disarmed_at = log.index(disarmed[0])
    for i, rec in enumerate(log):
        if rec["leaf"] == "TDH.VP.ENTER" and rec["kind"] == "seamcall" and i > armed_at:
            enters_after_arm.append((i, log[i - 1]["kind"] == "zero_step"))
    assert enters_after_arm and all(fired for i, fired in enters_after_arm if i < disarmed_at)
    assert not any(fired for i, fired in enters_after_arm if i > disarmed_at)
    assert len(kinds(log, "zero_step")) == sum(1 for i, _ in enters_after_arm if i < disarmed_at)


def test_sim_armed_enter_with_tree_held_returns_sept_busy() -> None:
    """An armed VP.ENTER while another host caller holds the SEPT tree returns exactly
    0x8000020000000092 on SEPT_TREE and does not enter; once the tree is free it enters."""
    state: dict[str, int] = {}

    def hook(sim: Simulation, recs: list[Any]) -> None:
        if "held_at" not in state and any(r[2] == "zero_step_armed" for r in recs):
            assert sim.locks.try_acquire(TREE_SH, 0, 0, True) is None
            state["held_at"] = sim.now
        elif "held_at" in state and "freed_at" not in state and sim.now >= state["held_at"] + 30_000:
            sim.locks.release(TREE_SH, 0, 0)
            state["freed_at"] = sim.now

    log = simulate([access(RIP, *range(BASE, BASE + 7)), io_exit(OTHER_RIP)], hook=hook)
    enters = [r for r in log if r["leaf"] == "TDH.VP.ENTER" and r["kind"] == "seamcall"
              and r["t_ns"] > state["held_at"]]
    busy = [r for r in enters if r["t_ns"] < state["freed_at"]]
    assert busy, "no VP.ENTER while the tree was held"
    for rec in busy:
        assert (rec["status"], rec["operand"], rec["outcome"]) == (
            "0x8000020000000092", "SEPT_TREE", "giveup")
        assert int(rec["status"], 16) == TDX_ERROR_SEPT_BUSY
        assert log[log.index(rec) - 1]["kind"] == "zero_step"
    later = [r for r in enters if r["t_ns"] >= state["freed_at"]]
    assert later[0]["outcome"] == "success" and log[log.index(later[0]) - 1]["kind"] == "zero_step"


def test_sim_armed_enter_with_listed_gpa_unmapped_is_a_synthetic_ept_exit() -> None:
    """If a listed GPA is still unmapped at an armed VP.ENTER, it returns a synthetic EPT
    violation (exit 48) without running the guest."""
    gpa7 = BASE + 6
    accept = GUEST_LOCKS["TDG.MEM.PAGE.ACCEPT"]
    state: dict[str, int] = {}

    def hook(sim: Simulation, recs: list[Any]) -> None:
        # Hold GPA 7's entry (as a guest would) so its AUG fails and the page stays unmapped.
        if "held" not in state and any(r[2] == "zero_step_armed" for r in recs):
            assert sim.locks.try_acquire(accept, 0, gpa7, False) is None
            state["held"] = sim.now
        elif "held" in state and "freed" not in state and sim.now >= state["held"] + 20_000:
            sim.locks.release(accept, 0, gpa7)
            state["freed"] = sim.now

    log = simulate([access(RIP, *range(BASE, BASE + 7)), io_exit(OTHER_RIP)], hook=hook)
    synthetic = [r for r in log if r.get("synthetic")]
    assert synthetic
    for rec in synthetic:
        assert rec["status"] == "0x0000000000000030" and rec["outcome"] == "success"
        assert rec["gpa"] == hex(gpa7 << 12)
        assert log[log.index(rec) - 1]["kind"] == "zero_step"
        # The guest did not run: no TDCALL of vcpu0 inside the synthetic entry.
        inside = [r for r in log if r["kind"] == "tdcall"
                  and rec["t_ns"] <= r["t_ns"] < rec["t_ns"] + rec["dur_ns"]]
        assert inside == []
    aug_busy = [r for r in log if r["leaf"] == "TDH.MEM.PAGE.AUG" and r["outcome"] == "giveup"]
    assert aug_busy and all(r["status"] == "0x8000020000000001" for r in aug_busy)


def test_sim_zero_step_off_does_nothing() -> None:
    """With zero_step off, the same script arms nothing: no zero_step or zero_step_armed
    records, and no VP.ENTER ever takes the SEPT tree."""
    ops = [access(RIP, *range(BASE, BASE + 12)), io_exit(OTHER_RIP), io_exit(0x3000)]
    on = simulate(ops)
    assert kinds(on, "zero_step") and kinds(on, "zero_step_armed")
    off = simulate(ops, zero_step=False)
    assert kinds(off, "zero_step", "zero_step_armed", "zero_step_disarmed") == []
    assert all(r["operand"] != "SEPT_TREE" for r in off)


def test_run_zero_step_off_has_no_zero_step_records() -> None:
    """The zero-step scenario with the mitigation off: no zero_step* records and no
    activations in the summary."""
    log = run_records(Config(zero_step=False), 5_000_000)
    assert not [r for r in log if r["kind"].startswith("zero_step")]
    on = run_records(Config(zero_step=True), 5_000_000)
    assert [r for r in on if r["kind"] == "zero_step"]
    assert [r for r in on if r["kind"] == "zero_step_armed"]
