"""KVM's mechanisms set up by scenario files (MODEL.md 5b): invalidation windows against
memslot deletion, a stall, a dead VM, the first entry after a build, long scripts, and
the selftest knobs (host delay before a SEAMCALL, jitter in guest time)."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import pytest

from engine.run import run
from engine.scenario import parse

HEAD = """
name = "t"
description = "a test"
[td]
vcpus = {vcpus}
{td}
[workload]
td_memory_mib = 16
{workload}
"""


def log_of(body: str, vcpus: int = 1, end_us: int = 400, td: str = "", workload: str = "",
           **overrides: Any) -> list[dict[str, Any]]:
    sc = parse(HEAD.format(vcpus=vcpus, td=td, workload=workload) + body, "t.toml")
    out = io.StringIO()
    run(sc.config(**overrides), sc, end_us * 1000, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def summary_of(body: str, vcpus: int = 1, end_us: int = 400, td: str = "",
               **overrides: Any) -> dict[str, Any]:
    sc = parse(HEAD.format(vcpus=vcpus, td=td, workload="") + body, "t.toml")
    return run(sc.config(**overrides), sc, end_us * 1000)


def kinds(log: list[dict[str, Any]]) -> Counter[str]:
    """Records by kind, seamcalls by leaf."""
    return Counter(r["leaf"] if r["kind"] == "seamcall" else r["kind"] for r in log)


def brief(log: list[dict[str, Any]], *kinds_: str) -> list[tuple[Any, ...]]:
    return [(r["t_ns"], r["kind"], r["actor"], r.get("action")) for r in log
            if r["kind"] in kinds_]


# -- invalidation window -------------------------------------------------------------------
WINDOW = """
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x200000"}]

[[invalidate]]
gpa = "0x200000"
at_us = 0
duration_us = 120
"""


def test_upstream_retries_an_invalidated_fault_locally_for_the_whole_window() -> None:
    """A fault in an MMU-notifier invalidation window returns RET_PF_RETRY
    (mmu_invalidate_retry_gfn). upstream's tdx_handle_ept_violation loops locally: one
    TDH.VP.ENTER before the window's end, one after, no zero-step. bounded re-enters the
    guest once per re-fault: the same RIP faults until the filter arms."""
    up = log_of(WINDOW, policy="upstream")
    assert kinds(up)["TDH.VP.ENTER"] == 2 and not kinds(up)["zero_step_armed"]
    assert [r["t_ns"] for r in up if r["leaf"] == "TDH.MEM.SEPT.ADD"] == [120_000]
    bounded = log_of(WINDOW, policy="bounded")
    assert kinds(bounded)["TDH.VP.ENTER"] == 21 and kinds(bounded)["zero_step_armed"] == 1


def test_a_signal_storm_leaves_the_local_loop_and_can_still_arm_zero_step() -> None:
    """The local loop leaves for a pending signal: a signal every 5 us makes upstream
    re-enter the guest again and again during the window, and the filter arms (MODEL.md 4:
    that is right, not a bug)."""
    log = log_of(WINDOW + """
[[signal]]
vcpu = 0
every_us = 5
start_us = 3
count = 20
""", policy="upstream")
    assert kinds(log)["TDH.VP.ENTER"] == 21 and kinds(log)["zero_step_armed"] == 1


# -- memslot deletion ----------------------------------------------------------------------
SLOT = """
[[vcpu]]
index = 0
script = [{step = "run", ns = 105000}, {step = "access", rip = 1, gpa = "0x10000"}]

[[vcpu]]
index = 1
host_delay_ns = 20000
script = [{step = "run", ns = 90000}, {step = "access", rip = 2, gpa = "0x12000"}]

[[memslot]]
gpa = "0x10000"
pages = 16
delete_at_us = 100
recreate_after_us = 300
"""


def test_memslot_deletion_waits_for_faults_in_flight_and_upstream_exits_to_userspace() -> None:
    """Deleting a memslot (kvm_set_memslot) makes it INVALID, waits for an SRCU grace
    period (vcpu1 is inside a fault on it, preempted before its SEAMCALLs), then zaps it.
    vcpu0 faults on the INVALID slot at 111 us: upstream (6.18 on, commit 2bc2694fe20b)
    breaks out of its local retry and re-enters the guest, as bounded does (RET_PF_RETRY),
    faulting again at the same RIP (zero-step may arm: the patch says so) until the slot
    is gone; then both exit to userspace (KVM_EXIT_MEMORY_FAULT) until it is recreated."""
    for policy in ("upstream", "bounded"):
        log = log_of(SLOT, vcpus=2, policy=policy, end_us=600)
        assert brief(log, "memslot", "memory_fault", "kick") == [
            (100_000, "memslot", "memslot0", "delete"),
            (148_000, "kick", "zap0", None),
            (157_500, "memory_fault", "vcpu0", "wait_memslot"),
            (157_500, "memory_fault", "vcpu1", "wait_memslot"),
            (400_000, "memslot", "memslot0", "recreate")], policy
        # The zap ran only after vcpu1's fault (its SEPT.ADD and AUG) was over.
        vcpu1_aug = next(r for r in log if r["leaf"] == "TDH.MEM.PAGE.AUG")
        block = next(r for r in log if r["leaf"] == "TDH.MEM.RANGE.BLOCK")
        assert vcpu1_aug["actor"] == "vcpu1" and block["t_ns"] > vcpu1_aug["t_ns"]
        assert enters(log, "vcpu0")[:8] == [0, 111_000, 117_000, 123_000, 129_000, 135_000,
                                            141_000, 410_000], policy


def enters(log: list[dict[str, Any]], actor: str) -> list[int]:
    return [r["t_ns"] for r in log
            if r["actor"] == actor and r["kind"] == "seamcall" and r["leaf"] == "TDH.VP.ENTER"]


def test_a_local_retry_that_never_leaves_an_invalid_slot_is_a_stall() -> None:
    """Before 6.18 (`upstream_6_17`) a vCPU retrying a fault on the INVALID slot never
    leaves the SRCU read side, and the deletion waits for it forever: a `stall` record
    for each side says who waits on whom, and the run goes on to its end (vcpu1 keeps
    running)."""
    log = log_of(SLOT, vcpus=2, policy="upstream_6_17", end_us=600)
    stalls = [r for r in log if r["kind"] == "stall"]
    assert [(r["t_ns"], r["actor"], r["waits_on"]) for r in stalls] == [
        (144_000, "memslot0", ["vcpu0"]), (144_000, "vcpu0", ["memslot0"])]
    assert "SRCU" in stalls[0]["why"]
    assert not [r for r in log if r["kind"] == "memslot" and r["action"] == "recreate"]
    assert any(r["actor"] == "vcpu1" and r["kind"] == "tdcall" for r in log)
    assert summary_of(SLOT, vcpus=2, policy="upstream_6_17", end_us=600)["stalls"] == 2


def test_no_event_left_with_a_vcpu_parked_is_a_stall() -> None:
    """A vCPU parked behind a no-entry flag that nobody will clear: once no event is
    left, a `stall` record names it, once."""
    from engine.config import Config
    from engine.sim import Simulation
    from tests.engine.support import InlineScenario, io_exit

    sim = Simulation(Config(scenario="inline", vcpus=1), InlineScenario([[io_exit(1)]]))
    sim.no_entry = 1  # a zap path that never finishes
    recs = sim.run_until(100_000) + sim.run_until(200_000)
    assert [(r[2], r[3], r[9]["waits_on"]) for r in recs] == [
        ("stall", "vcpu0", ["zap path (no-entry flag)"])]


# -- dead VM -------------------------------------------------------------------------------
def test_a_pending_page_access_with_sept_ve_disable_kills_the_vm() -> None:
    """With the TD attribute SEPT_VE_DISABLE a guest access to a PENDING page exits
    instead of taking a #VE; tdx_handle_ept_violation calls it a guest bug and kills the
    VM (kvm_vm_dead, -EIO): a `vm_dead` record, then no TDH.VP.ENTER on any vCPU."""
    body = """
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x10000"}]

[[vcpu]]
index = 1
script = [{step = "io", rip = 2, repeat = 100}]
"""
    log = log_of(body, vcpus=2, td="sept_ve_disable = true", policy="upstream", end_us=100)
    dead = [r for r in log if r["kind"] == "vm_dead"]
    assert [(r["t_ns"], r["actor"], r["gpa"]) for r in dead] == [(17_000, "vcpu0", "0x10000")]
    assert not [r for r in log if r["leaf"] == "TDH.VP.ENTER" and r["t_ns"] > 17_000]
    assert not [r for r in log if r["kind"] == "tdcall"]  # no #VE, so no ACCEPT
    assert summary_of(body, vcpus=2, td="sept_ve_disable = true", end_us=100)["vm_dead"] == 1
    alive = log_of(body, vcpus=2, policy="upstream", end_us=100)
    assert not [r for r in alive if r["kind"] == "vm_dead"]
    assert [r for r in alive if r["actor"] == "vcpu1" and r["t_ns"] > 17_000]


# -- build ---------------------------------------------------------------------------------
def test_vcpus_first_enter_after_the_last_page_add_released_tdr() -> None:
    """KVM_TDX_FINALIZE_VM comes after the last TDH.MEM.PAGE.ADD: the first TDH.VP.ENTER
    of each vCPU starts once that PAGE.ADD released TDR, and none is BUSY|TDR."""
    log = log_of("""
[[vcpu]]
indices = [0, 1]
script = [{step = "io", rip = 2}]
""", vcpus=2, workload="build_pages = 4", end_us=100)
    adds = [r for r in log if r["leaf"] == "TDH.MEM.PAGE.ADD"]
    enters = [r for r in log if r["leaf"] == "TDH.VP.ENTER"]
    assert adds[-1]["t_ns"] + adds[-1]["dur_ns"] == 20_000
    assert [(r["t_ns"], r["actor"], r["outcome"]) for r in enters[:2]] == [
        (20_000, "vcpu0", "success"), (20_250, "vcpu1", "success")]
    assert not [r for r in log if r["outcome"] != "success"]


# -- long scripts ------------------------------------------------------------------------
def test_a_script_of_thousands_of_instructions_without_exits_runs() -> None:
    """A loop over thousands of already-mapped or shared pages runs in the guest without an
    exit between them: the engine steps through them in a loop (it used to recurse once
    per instruction and died of RecursionError at about 330)."""
    log = log_of("""
[[vcpu]]
index = 0
script = [{step = "loop", rip = 1, gpa_start = "0x100000", pages = 400},
          {step = "loop", rip = 2, gpa_start = "0x100000", pages = 400},
          {step = "loop", rip = 3, gpa_start = "0x100000", pages = 3000, private = false},
          {step = "io", rip = 4}]
""", end_us=5000)
    calls = [r for r in log if r["kind"] == "seamcall" and r["leaf"] == "TDH.VP.ENTER"]
    assert len(calls) == 1 + 400 + 1  # a fault per fresh page, then the IO, then the end
    assert [r["status"] for r in calls[-2:]] == ["0x000000000000001E", "0x000000000000000C"]


# -- selftest knobs ------------------------------------------------------------------------
def test_host_delay_holds_the_frozen_spte_before_the_seamcall() -> None:
    """host_delay_ns: vcpu0's thread is preempted 30 us before each SEAMCALL, with the
    SPTE frozen; vcpu1 faulting the same GFN meanwhile finds it frozen and issues nothing
    (upstream: it re-runs its fault locally until the GFN is mapped)."""
    log = log_of("""
[[vcpu]]
index = 0
host_delay_ns = 30000
script = [{step = "access", rip = 1, gpa = "0x10000"}]

[[vcpu]]
index = 1
script = [{step = "access", rip = 2, gpa = "0x10000"}]
""", vcpus=2, policy="upstream", end_us=200)
    calls = [(r["t_ns"], r["actor"], r["leaf"]) for r in log
             if r["kind"] == "seamcall" and r["leaf"] != "TDH.VP.ENTER"]
    assert calls == [(36_000, "vcpu0", "TDH.MEM.SEPT.ADD"), (69_500, "vcpu0", "TDH.MEM.PAGE.AUG")]
    assert enters(log, "vcpu1") == [250, 74_250]


JITTER = """
[[vcpu]]
indices = [0, 1]
jitter_ns = 5000
script = [{step = "io", rip = 1, repeat = 20}]
"""


def test_jitter_varies_guest_time_by_seed_and_repeats_with_it() -> None:
    """jitter_ns adds 0..jitter_ns of guest time before each operation, drawn from the
    run's generator: the same seed gives the same log, another seed other times, and
    without jitter both vCPUs keep their fixed 250 ns phase."""
    def gaps(log: list[dict[str, Any]]) -> list[int]:
        starts = {a: [r["t_ns"] for r in log if r["actor"] == a and r["leaf"] == "TDH.VP.ENTER"]
                  for a in ("vcpu0", "vcpu1")}
        return [b - a for a, b in zip(starts["vcpu0"], starts["vcpu1"], strict=True)]
    one = log_of(JITTER, vcpus=2, seed=1)
    assert one == log_of(JITTER, vcpus=2, seed=1)
    assert gaps(one) != gaps(log_of(JITTER, vcpus=2, seed=2))
    assert len(set(gaps(one))) > 5
    assert set(gaps(log_of(JITTER.replace("jitter_ns = 5000\n", ""), vcpus=2))) == {250}
    durations = [r["dur_ns"] for r in one if r["leaf"] == "TDH.VP.ENTER"]
    assert all(4000 <= d <= 9000 for d in durations[:-2])  # entry + 0..5 us + exit


def test_upstream_zap_retries_after_a_real_kick_never_fail() -> None:
    """With an IPI round trip (kick_ns) shorter than a vCPU's entry, a kick that only
    waited that long let the "guaranteed" retry meet a vCPU still entering (53 KVM bugs
    in these 5 ms before). The kick waits until every vCPU has left guest mode, so under
    upstream the zap path's one retry after it always succeeds."""
    sc = parse("""
name = "kick-short"
description = "conversion with a short IPI"
[td]
policy = "upstream"
[timing]
kick_ns = 300
[workload]
td_memory_mib = 256
run_mean_ns = 10000
zap_pages = 16
zap_interval_ns = 30000
""", "kick.toml")
    summary = run(sc.config(), sc, 5_000_000)
    assert summary["by_leaf"]["TDH.MEM.RANGE.BLOCK"]["retries"] >= 30  # kicks and retries ran
    assert summary["kvm_bugs"] == 0


def test_an_invalidation_with_zap_unmaps_the_range_then_retries_its_faults() -> None:
    """zap = true: a hole punch's invalidate_range_start zaps the mapped pages of the range
    (zap0: BLOCK, TRACK, kick, REMOVE) and, until the window ends, a fault on it returns
    RET_PF_RETRY: upstream's vCPU maps the page again only after the window."""
    log = log_of("""
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x200000"}, {step = "run", ns = 60000},
          {step = "access", rip = 2, gpa = "0x200000"}]

[[invalidate]]
gpa = "0x200000"
at_us = 30
duration_us = 100
zap = true
""", policy="upstream")
    zap = [(r["t_ns"], r["leaf"]) for r in log if r["actor"] == "zap0" and r["kind"] == "seamcall"]
    assert [leaf for _, leaf in zap] == ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK",
                                         "TDH.MEM.PAGE.REMOVE"]
    assert zap[0][0] == 30_000
    augs = [r["t_ns"] for r in log if r["leaf"] == "TDH.MEM.PAGE.AUG"]
    assert len(augs) == 2 and augs[0] < 30_000 and augs[1] >= 130_000
    assert kinds(log)["zero_step_armed"] == 0


def test_a_free_fault_rerun_is_refused_up_front() -> None:
    """kvm_fault_ns = 0 would let a fault that runs again (a frozen SPTE, an invalidation
    window, upstream's local retry) loop without simulated time passing: refused by
    name before any run."""
    from engine.errors import ScenarioError

    with pytest.raises(ScenarioError, match="timing.kvm_fault_ns"):
        parse(HEAD.format(vcpus=1, td="", workload="") + "[timing]\nkvm_fault_ns = 0\n"
              + WINDOW, "t.toml")
