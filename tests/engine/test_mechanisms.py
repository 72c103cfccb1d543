"""KVM's mechanisms around the SEAMCALLs (MODEL.md 5b), each in a tiny exact-log scenario:
frozen SPTEs, the local retry that re-runs the fault, kicks that wait, TLB tracking,
TDH.VP.ENTER and TRACK loops with no cap, and the first entry after a build."""

from __future__ import annotations

import json
from typing import Any

from engine.config import Config
from engine.export import jsonl_lines
from engine.locks import SEPT_TREE, TD_EPOCH, Plan, Step
from engine.params import Timing
from engine.sim import Simulation
from engine.zap import Zapper
from tests.engine.support import InlineScenario, access, io_exit

PAGE = 600  # a page in region 1 (pages 512..1023)
AUG, ENTER, TRACK = "TDH.MEM.PAGE.AUG", "TDH.VP.ENTER", "TDH.MEM.TRACK"
REMOVE = "TDH.MEM.PAGE.REMOVE"


def log_of(policy: str, guests: list[Any], extra: Any = None, end_ns: int = 60_000,
           timing: Timing | None = None, **config: Any) -> list[dict[str, Any]]:
    sc = InlineScenario(guests, timing=timing, extra=extra)
    sim = Simulation(Config(scenario="inline", vcpus=len(guests), policy=policy, **config), sc)
    return [json.loads(line) for line in jsonl_lines(sim.run_until(end_ns) + sim.finish())]


def calls(log: list[dict[str, Any]]) -> list[tuple[int, str, str, int, str]]:
    """(t_ns, actor, leaf, attempt, outcome) of every SEAMCALL/TDCALL, in log order."""
    return [(r["t_ns"], r["actor"], r["leaf"], r["attempt"], r["outcome"]) for r in log
            if r["kind"] in ("seamcall", "tdcall")]


def hold(kind: int, exclusive: bool, operand: int, start_ns: int, end_ns: int,
         mapped_region: int = -1, then: Any = None) -> Any:
    """An extra for InlineScenario: a host holder of one module lock over [start, end)
    (what another SEAMCALL in flight would hold), and optionally a region whose SEPT page
    already exists."""
    plan = Plan((Step(kind, exclusive, operand),))

    def extra(sim: Simulation) -> None:
        if mapped_region >= 0:
            sim.regions[mapped_region] = 1
        sim.at(start_ns, lambda _: sim.locks.try_plan(plan, -1, 0, True))
        sim.at(end_ns, lambda _: sim.locks.release_plan(plan, -1, 0))
        if then is not None:
            then(sim)
    return extra


# -- frozen SPTE ---------------------------------------------------------------------------
def test_a_frozen_spte_makes_the_second_fault_retry_without_a_seamcall() -> None:
    """Two vCPUs fault one GFN at once. The first freezes the mirror SPTE and issues
    SEPT.ADD then AUG; the second finds it frozen and returns RET_PF_RETRY with no SEAMCALL
    (tdp_mmu_set_spte_atomic / is_frozen_spte in kvm_tdp_mmu_map): under `upstream` it
    re-runs the fault locally until the GFN is mapped, under `bounded` it re-enters the
    guest, which faults again. The GFN is AUGed exactly once."""
    guests = [[access(0x10, PAGE)], [access(0x20, PAGE)]]
    assert calls(log_of("upstream", guests))[:6] == [
        (0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
        (6000, "vcpu0", "TDH.MEM.SEPT.ADD", 1, "success"), (9500, "vcpu0", AUG, 1, "success"),
        (13000, "vcpu0", ENTER, 1, "success"), (14000, "vcpu1", ENTER, 1, "success")]
    assert calls(log_of("bounded", guests))[:7] == [
        (0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
        (6000, "vcpu0", "TDH.MEM.SEPT.ADD", 1, "success"),
        (6000, "vcpu1", ENTER, 1, "success"),  # re-entered: frozen, RET_PF_RETRY
        (9500, "vcpu0", AUG, 1, "success"),
        (12000, "vcpu1", ENTER, 1, "success"),  # the AUG's SPTE is frozen: again
        (13000, "vcpu0", ENTER, 1, "success")]


# -- the local retry re-runs the fault -----------------------------------------------------
def test_upstream_reruns_the_fault_and_issues_nothing_once_the_gfn_is_mapped() -> None:
    """upstream: a BUSY AUG goes back to the TDP MMU (-EBUSY, the SPTE restored) and
    tdx_handle_ept_violation runs the whole fault again. Here the SEPT tree is held
    exclusively over 5..10 us: vcpu0's AUG is BUSY twice; in between its runs vcpu1 maps
    the GFN, so vcpu0's next run finds it frozen, then mapped, and issues no third AUG: its
    last BUSY was handed back for good (giveup). `bounded` instead re-issues at once inside
    the wrapper, the SPTE frozen all along, and succeeds at its 5th attempt."""
    guests = [[access(0x10, PAGE)], [access(0x20, PAGE, run_ns=4500)]]
    extra = hold(SEPT_TREE, True, 0x92, 5000, 10_000, mapped_region=1)
    assert calls(log_of("upstream", guests, extra))[:7] == [
        (0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
        (6000, "vcpu0", AUG, 1, "busy"), (9000, "vcpu0", AUG, 2, "giveup"),
        (10_500, "vcpu1", AUG, 1, "success"),
        (14_000, "vcpu1", ENTER, 1, "success"), (14_000, "vcpu0", ENTER, 1, "success")]
    assert calls(log_of("bounded", guests, extra))[:8] == [
        (0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
        (6000, "vcpu0", AUG, 1, "busy"), (7100, "vcpu0", AUG, 2, "busy"),
        (8200, "vcpu0", AUG, 3, "busy"), (9300, "vcpu0", AUG, 4, "busy"),
        (10_400, "vcpu0", AUG, 5, "success"),
        (10_500, "vcpu1", ENTER, 1, "success")]  # vcpu1 met the frozen SPTE: re-entered


def test_vmm_lock_runs_the_walk_again_after_its_mutex_wait() -> None:
    """vmm_lock: the host mutex around the SEPT SEAMCALLs. vcpu1 and vcpu2 wait for it
    while vcpu0 installs the GFN; after the wait each runs the walk again, finds the GFN
    mapped and issues nothing, and enters the guest once more (no re-fault): one SEPT.ADD,
    one AUG in all."""
    log = log_of("vmm_lock", [[access(0x10, PAGE)], [access(0x20, PAGE)], [access(0x30, PAGE)]])
    assert calls(log)[:8] == [
        (0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
        (0, "vcpu2", ENTER, 1, "success"),
        (6000, "vcpu0", "TDH.MEM.SEPT.ADD", 1, "success"), (9500, "vcpu0", AUG, 1, "success"),
        (13_000, "vcpu0", ENTER, 1, "success"), (13_000, "vcpu1", ENTER, 1, "success"),
        (13_000, "vcpu2", ENTER, 1, "success")]
    assert [c[1] for c in calls(log) if c[2] in (AUG, "TDH.MEM.SEPT.ADD")] == ["vcpu0", "vcpu0"]


# -- kicks wait ----------------------------------------------------------------------------
def test_a_kick_waits_for_a_vcpu_in_a_tdcall_to_exit() -> None:
    """upstream zap path: BLOCK meets the SEPT entry held by the guest's ACCEPT (a 6 us
    TDCALL), sets the no-entry flag and kicks. kvm_make_all_cpus_request waits until the
    vCPU has left guest mode: its TDCALL returns at 21 us, its TD exit is back at 23 us
    (not the 4 us IPI round trip, 22 us); the one retry then succeeds."""
    def zap(sim: Simulation) -> None:
        sim.host_actors.append(Zapper(sim, 0, 1, 0, 0, (17_000,), ((PAGE, PAGE + 1),)))
    log = log_of("upstream", [[access(0x10, PAGE), io_exit(0x20, run_ns=10_000)]], zap,
                 timing=Timing(accept_ns=6000))
    zap_log = [(r["t_ns"], r["dur_ns"], r["kind"], r["leaf"], r["attempt"], r["outcome"])
               for r in log if r["actor"] == "zap0"][:3]
    assert zap_log == [(17_000, 1000, "seamcall", "TDH.MEM.RANGE.BLOCK", 1, "busy"),
                       (18_000, 5000, "kick", None, None, None),
                       (23_000, 2000, "seamcall", "TDH.MEM.RANGE.BLOCK", 2, "success")]
    kicked = next(r for r in log if r["leaf"] == ENTER and r["t_ns"] == 13_000)
    assert (kicked["status"], kicked["t_ns"] + kicked["dur_ns"]) == ("0x0000000000000001", 23_000)


def test_a_kick_waits_for_a_vcpu_mid_entry_to_enter_then_exit() -> None:
    """A vCPU inside TDH.VP.ENTER when the IPI comes finishes entering, then takes the
    IPI's exit at VM entry: the kick lasts until that exit is back in the host."""
    sim = Simulation(Config(scenario="inline", vcpus=1), InlineScenario([[io_exit(0x10)]]))
    sim.run_until(1000)
    vcpu = sim.vcpus[0]
    assert vcpu.entering
    assert vcpu.kick() == 2000 + 2000  # VM entry at 2 us, then a 2 us TD exit
    log = [json.loads(line) for line in jsonl_lines(sim.run_until(10_000) + sim.finish())]
    assert (log[0]["leaf"], log[0]["status"], log[0]["dur_ns"]) == (ENTER, "0x0000000000000001",
                                                                    4000)


# -- TLB tracking ------------------------------------------------------------------------
def _epoch_held_then_zap(sim: Simulation) -> None:
    sim.host_actors.append(Zapper(sim, 0, 1, 0, 0, (20_000,), ((PAGE, PAGE + 1),)))


EPOCH_HELD = hold(TD_EPOCH, False, 0xA9, 19_000, 26_000, then=_epoch_held_then_zap)
TOUCH = [[access(0x10, PAGE), io_exit(0x20, run_ns=40_000)]]


def test_remove_without_a_tracked_block_is_tlb_tracking_not_done() -> None:
    """TDH.MEM.PAGE.REMOVE of a blocked page needs a TRACK that succeeded after the BLOCK:
    under `none` the TRACK met BUSY|TD_EPOCH and was dropped, so the REMOVE returns
    TDX_TLB_TRACKING_NOT_DONE on RCX, 0xC0000B0800000001 (tdh_mem_page_remove; outcome
    `error`), KVM_BUG_ON in tdx_sept_drop_private_spte."""
    log = log_of("none", TOUCH, EPOCH_HELD)
    zap = [(r["t_ns"], r["kind"], r["leaf"], r["status"], r["outcome"]) for r in log
           if r["actor"] == "zap0"]
    assert zap == [
        (20_000, "seamcall", "TDH.MEM.RANGE.BLOCK", "0x0000000000000000", "success"),
        (22_000, "seamcall", TRACK, "0x80000200000000A9", "giveup"),
        (23_000, "kick", None, None, None),
        (27_000, "seamcall", REMOVE, "0xC0000B0800000001", "error"),
        (27_000, "kvm_bug", REMOVE, None, None)]


def test_bounded_era_track_spins_while_busy_with_no_cap() -> None:
    """v19's tdx_track(): TRACK again at once while it is BUSY, beyond retry_max (here 1),
    then the kick; the REMOVE after it is tracked and succeeds. Each TRACK of that loop
    is a logical call of its own (attempt 1), so `bounded`'s cap of retry_max + 1
    attempts per call stays the SEPT wrapper's, and none is a give-up."""
    log = log_of("bounded", TOUCH, EPOCH_HELD, retry_max=1)
    zap = [(r["t_ns"], r["leaf"], r["attempt"], r["outcome"]) for r in log
           if r["actor"] == "zap0" and r["kind"] == "seamcall"]
    assert zap == [(20_000, "TDH.MEM.RANGE.BLOCK", 1, "success"),
                   (22_000, TRACK, 1, "busy"), (23_100, TRACK, 1, "busy"),
                   (24_200, TRACK, 1, "busy"), (25_300, TRACK, 1, "busy"),
                   (26_400, TRACK, 1, "success"), (32_400, REMOVE, 1, "success")]


def test_upstream_track_blocks_entry_kicks_and_retries_once() -> None:
    """Mainline tdx_track(): try once; on BUSY set the no-entry flag, kick, retry once; then
    the kick that always follows TRACK. No vCPU enters between the BUSY and the retry."""
    log = log_of("upstream", TOUCH, EPOCH_HELD)
    zap = [(r["t_ns"], r["kind"], r["leaf"], r["attempt"], r["outcome"]) for r in log
           if r["actor"] == "zap0"]
    assert zap == [(20_000, "seamcall", "TDH.MEM.RANGE.BLOCK", 1, "success"),
                   (22_000, "seamcall", TRACK, 1, "busy"), (23_000, "kick", None, None, None),
                   (27_000, "seamcall", TRACK, 2, "success"), (29_000, "kick", None, None, None),
                   (33_000, "seamcall", REMOVE, 1, "success")]
    assert not [r for r in log if r["leaf"] == ENTER and 23_000 <= r["t_ns"] < 29_000]


# -- TDH.VP.ENTER BUSY ---------------------------------------------------------------------
def test_bounded_reenters_a_busy_vp_enter_with_no_cap_and_no_giveup() -> None:
    """v19 re-entered a BUSY TDH.VP.ENTER at once (EXIT_FASTPATH_REENTER_GUEST) with no
    cap: with retry_max 1 and the TD epoch held exclusively over 3..14 us, it re-enters 7
    times, every BUSY `busy`, none a give-up. Each re-entry is a logical call of its own
    (attempt 1): `bounded`'s cap of retry_max + 1 attempts per call is the SEPT wrapper's."""
    log = log_of("bounded", [[io_exit(0x10), io_exit(0x20)]],
                 hold(TD_EPOCH, True, 0xA9, 3000, 14_000), retry_max=1)
    enters = [(t, a, o) for t, _, leaf, a, o in calls(log) if leaf == ENTER]
    assert enters == [(0, 1, "success"), (7000, 1, "busy"), (8100, 1, "busy"),
                      (9200, 1, "busy"), (10_300, 1, "busy"), (11_400, 1, "busy"),
                      (12_500, 1, "busy"), (13_600, 1, "busy"), (14_700, 1, "success"),
                      (21_700, 1, "success")]


def test_a_run_that_ends_during_upstreams_rerun_closes_the_held_busy() -> None:
    """The run ends while upstream's fault is between a BUSY and its next run (the
    record's outcome not yet decided): finish() writes it as `busy`, and every record
    after it is handed out too."""
    guests = [[access(0x10, PAGE)], [access(0x20, PAGE, run_ns=4500)]]
    extra = hold(SEPT_TREE, True, 0x92, 5000, 10_000, mapped_region=1)
    log = log_of("upstream", guests, extra, end_ns=6500)
    assert calls(log) == [(0, "vcpu0", ENTER, 1, "success"), (0, "vcpu1", ENTER, 1, "success"),
                          (6000, "vcpu0", AUG, 1, "busy")]
