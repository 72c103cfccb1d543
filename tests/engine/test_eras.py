"""The kernel's eras (issue 14 items 1, 2): the memslot deadlock before 6.18 and its fix,
KVM_PRE_FAULT_MEMORY, and the build-time TDR race before 6.19 and "all the locks"."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ScenarioError
from engine.export import encode
from engine.policies import POLICY_CLASSES
from engine.run import records, run
from engine.scenario import Scenario, load, parse
from engine.sim import Simulation
from engine.status import SEAMCALL_LEAVES
from tests.engine.support import recount
from tests.engine.test_mechanisms_scenarios import SLOT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEADLOCK = load(EXAMPLES / "memslot_deadlock.toml")
BUILD = load(EXAMPLES / "build_tdr_race.toml")


def log_of(sc: Scenario, policy: str, end_us: int | None = None,
           **overrides: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = io.StringIO()
    summary = run(sc.config(policy=policy, **overrides), sc, (end_us or sc.duration_us) * 1000,
                  out)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def of_kind(log: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in log if r["kind"] == kind]


def enters(log: list[dict[str, Any]], actor: str) -> list[int]:
    return [r["t_ns"] for r in log if r["actor"] == actor and r["leaf"] == "TDH.VP.ENTER"]


def test_the_era_policies() -> None:
    """`upstream_6_17` is mainline's local retry without 6.18's break-out and without
    6.19's serialised build; `upstream` has both; the older policies keep the break-out
    flag's default and run the build unserialised."""
    old, new = POLICY_CLASSES["upstream_6_17"], POLICY_CLASSES["upstream"]
    assert old.local_retry and not old.breaks_on_invalid_memslot and not old.serialises_build
    assert new.local_retry and new.breaks_on_invalid_memslot and new.serialises_build
    assert not any(POLICY_CLASSES[p].serialises_build for p in ("none", "bounded", "vmm_lock",
                                                                 "backoff"))


def test_the_new_leaves_have_the_modules_numbers() -> None:
    """tdx_api_defs.h (intel/tdx-module, tdx_1.5): VP.ADDCX 4, VP.CREATE 10, MR.EXTEND 16,
    MR.FINALIZE 17, VP.INIT 22."""
    assert {k: SEAMCALL_LEAVES[k] for k in ("TDH.VP.ADDCX", "TDH.VP.CREATE", "TDH.MR.EXTEND",
                                            "TDH.MR.FINALIZE", "TDH.VP.INIT")} == {
        "TDH.VP.ADDCX": 4, "TDH.VP.CREATE": 10, "TDH.MR.EXTEND": 16, "TDH.MR.FINALIZE": 17,
        "TDH.VP.INIT": 22}


# -- the memslot deadlock --------------------------------------------------------------
def test_before_6_18_deletion_and_faults_wait_on_each_other() -> None:
    """The 6.18 thread: a prefault (kvm_tdp_map_page's loop) and a vCPU (TDX's local
    retry) on the INVALID slot keep returning RET_PF_RETRY inside the SRCU read side, and
    the deletion's synchronize_srcu waits for them: `stall` records name memslot0 waiting
    on prefault0, and prefault0 and vcpu0 waiting on memslot0. The slot is never
    recreated, the prefault never returns, vcpu0 never enters again; vcpu1 runs on."""
    log, summary = log_of(DEADLOCK, "upstream_6_17")
    stalls = [(r["t_ns"], r["actor"], r["waits_on"]) for r in of_kind(log, "stall")]
    assert stalls == [(104_000, "memslot0", ["prefault0"]), (104_000, "prefault0", ["memslot0"]),
                      (111_000, "vcpu0", ["memslot0"])]
    assert summary["stalls"] == 3
    assert [r["action"] for r in of_kind(log, "memslot")] == ["delete"]
    assert not of_kind(log, "ioctl") and summary["ioctls"] == 0
    assert enters(log, "vcpu0") == [0]
    assert max(enters(log, "vcpu1")) > 300_000


def test_a_stalled_pair_makes_no_more_events() -> None:
    """The engine does not spin with the stalled faults: once every fault inside the
    deletion sleeps, nothing is scheduled until something could end the stall."""
    sc = parse(DEADLOCK_ALONE, "t.toml")
    sim = Simulation(sc.config(policy="upstream_6_17"), sc)
    sim.run_until(1_000_000)
    scheduled = sim._seq
    sim.run_until(50_000_000)
    assert sim._seq == scheduled


# The memslot tests' two vCPUs (vcpu1 inside a fault on the slot, vcpu0 faulting on it
# while it is INVALID), alone in a TD.
DEADLOCK_ALONE = """
name = "t"
description = "a vCPU on a memslot being deleted while another's fault keeps it INVALID"
[td]
vcpus = 2
[workload]
td_memory_mib = 16
""" + SLOT


def test_a_signal_ends_the_stall_and_the_deletion_goes_on() -> None:
    """A signal breaks the local retry (signal_pending): vcpu0 leaves the SRCU read side,
    the grace period ends, the slot is zapped and recreated, and vcpu0 (whose re-entry
    faults on the deleted slot) waits in userspace until then."""
    sc = parse(DEADLOCK_ALONE + """
[[signal]]
vcpu = 0
every_us = 1
start_us = 200
count = 1
""", "t.toml")
    log, summary = log_of(sc, "upstream_6_17", end_us=800)
    assert [(r["t_ns"], r["actor"]) for r in of_kind(log, "stall")] == [
        (144_000, "memslot0"), (144_000, "vcpu0")]
    assert [(r["t_ns"], r["action"]) for r in of_kind(log, "memslot")] == [
        (100_000, "delete"), (400_000, "recreate")]
    assert [r["action"] for r in of_kind(log, "memory_fault")] == ["wait_memslot"]
    assert enters(log, "vcpu0")[-2] == 410_000


def test_switching_to_upstream_live_breaks_the_stall() -> None:
    """A live change to `upstream` (6.18's break-out) reaches the sleeping fault: it exits
    to userspace, and the deletion goes on."""
    sc = parse(DEADLOCK_ALONE, "t.toml")
    sim = Simulation(sc.config(policy="upstream_6_17"), sc)
    recs = sim.run_until(200_000)
    sim.apply({"policy": "upstream"})
    recs += sim.run_until(800_000) + sim.finish()
    assert [r[9]["action"] for r in recs if r[2] == "memslot"] == ["delete", "recreate"]
    assert [r[9]["action"] for r in recs if r[2] == "memory_fault"] == ["wait_memslot"]


def test_from_6_18_the_prefault_gets_eagain_and_the_vcpu_exits_to_userspace() -> None:
    """The 6.18 fix: the prefault's fault on the INVALID slot returns -EAGAIN, so the
    ioctl returns 0 with the 7 pages it mapped; while the slot is gone it gets EFAULT and
    userspace calls again every 20 us; after the recreation it maps the last 5. vcpu0's
    fault (behind the deletion's zap on mmu_lock) finds the slot gone and exits to
    userspace (memory_fault wait_memslot), and re-enters after the recreation. No stall."""
    log, summary = log_of(DEADLOCK, "upstream")
    assert not of_kind(log, "stall") and summary["stalls"] == 0
    ioctls = [(r["result"], r["gpa"], r["pages"], r["mapped"]) for r in of_kind(log, "ioctl")]
    assert ioctls[0] == ("0", "0x14000", 12, 7)
    assert set(ioctls[1:-1]) == {("EFAULT", "0x1b000", 5, 0)}
    assert ioctls[-1] == ("0", "0x1b000", 5, 5)
    assert of_kind(log, "ioctl")[-1]["t_ns"] > 400_000
    assert summary["ioctls"] == len(ioctls) and summary["ioctl_errors"] == len(ioctls) - 2
    assert [r["actor"] for r in log if r["kind"] == "seamcall" and r["leaf"] in (
        "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG")].count("prefault0") == 1 + 12
    assert [r["action"] for r in of_kind(log, "memory_fault")] == ["wait_memslot"]
    recreate = of_kind(log, "memslot")[1]["t_ns"]
    assert recreate == 400_000 and enters(log, "vcpu0")[1] == recreate + 10_000


def test_a_prefault_on_an_invalid_slot_returns_eagain_at_once() -> None:
    """kvm_mmu_faultin_pfn from 6.18: a prefault whose first page is on an INVALID slot
    gets -EAGAIN (the ioctl maps nothing), and userspace calls again `retry_us` later."""
    sc = parse(DEADLOCK_ALONE + """
[[prefault]]
gpa = "0x14000"
at_us = 101
retry_us = 7
""", "t.toml")
    log, _ = log_of(sc, "upstream", end_us=120)
    assert [(r["t_ns"], r["result"], r["mapped"]) for r in of_kind(log, "ioctl")] == [
        (103_000, "EAGAIN", 0), (112_000, "EAGAIN", 0)]


# -- the build-time TDR race -----------------------------------------------------------
def test_before_6_19_vcpu_setup_meets_the_build_on_tdr_and_kvm_bugs() -> None:
    """The 6.19 thread: KVM_TDX_INIT_VCPU beside KVM_TDX_INIT_MEM_REGION. TDH.VP.CREATE
    takes TDR shared (RDX) while TDH.MR.EXTEND holds it exclusive: BUSY
    0x8000020000000002, a KVM_BUG_ON (kvm_bug record, kvm_bugs 1), the VM is dead: the
    build's ioctl fails with EIO and no vCPU ever enters."""
    log, summary = log_of(BUILD, "upstream_6_17")
    busy = [r for r in log if r["outcome"] == "giveup"]
    assert [(r["actor"], r["leaf"], r["status"], r["operand"]) for r in busy] == [
        ("vcpu0", "TDH.VP.CREATE", "0x8000020000000002", "TDR")]
    assert [r["failed_status"] for r in of_kind(log, "kvm_bug")] == ["0x8000020000000002"]
    assert summary["kvm_bugs"] == 1 and summary["vm_dead"] == 1
    assert [(r["actor"], r["ioctl"], r["result"]) for r in of_kind(log, "ioctl")] == [
        ("vcpu0", "KVM_TDX_INIT_VCPU", "EIO"), ("build0", "KVM_TDX_INIT_MEM_REGION", "EIO")]
    assert not [r for r in log if r["leaf"] in ("TDH.VP.ENTER", "TDH.MR.FINALIZE")]


def test_a_busy_page_add_returns_ebusy_and_userspace_calls_again() -> None:
    """When the vCPU setup gets in between two pages, it holds TDR shared across its
    SEAMCALLs and the next PAGE.ADD fails (TDR, RDX): tdx_gmem_post_populate returns
    -EBUSY, which is no KVM bug; userspace calls again until the setup is done, and the
    build, finalize and the vCPUs' entries follow."""
    text = (EXAMPLES / "build_tdr_race.toml").read_text().replace("start_us = 40",
                                                                  "start_us = 30")
    log, summary = log_of(parse(text, "t.toml"), "upstream_6_17")
    busy = {(r["leaf"], r["status"]) for r in log if r["outcome"] == "giveup"}
    assert busy == {("TDH.MEM.PAGE.ADD", "0x8000020000000002")}
    results = [(r["ioctl"], r["result"]) for r in of_kind(log, "ioctl")]
    assert ("KVM_TDX_INIT_MEM_REGION", "EBUSY") in results
    assert results[-1] == ("KVM_TDX_FINALIZE_VM", "0") and summary["kvm_bugs"] == 0
    assert summary["ioctl_errors"] == results.count(("KVM_TDX_INIT_MEM_REGION", "EBUSY"))
    assert enters(log, "vcpu3")


def test_under_6_19_the_ioctls_are_serialised_and_never_busy() -> None:
    """"All the locks": the region first (8 PAGE.ADD, 16 MR.EXTEND each), then each
    vCPU's setup (VP.CREATE, 4 ADDCX, VP.INIT), then MR.FINALIZE, and the vCPUs' first
    TDH.VP.ENTER only after it. No BUSY, no KVM bug."""
    log, summary = log_of(BUILD, "upstream")
    assert summary["busy"] == 0 and summary["kvm_bugs"] == 0 and summary["vm_dead"] == 0
    leaves = summary["by_leaf"]
    assert {leaf: leaves[leaf]["attempts"] for leaf in (
        "TDH.MEM.PAGE.ADD", "TDH.MR.EXTEND", "TDH.VP.CREATE", "TDH.VP.ADDCX", "TDH.VP.INIT",
        "TDH.MR.FINALIZE")} == {"TDH.MEM.PAGE.ADD": 8, "TDH.MR.EXTEND": 128,
                                 "TDH.VP.CREATE": 4, "TDH.VP.ADDCX": 16, "TDH.VP.INIT": 4,
                                 "TDH.MR.FINALIZE": 1}
    ioctls = [(r["actor"], r["ioctl"]) for r in of_kind(log, "ioctl")]
    assert ioctls == [("build0", "KVM_TDX_INIT_MEM_REGION")] + [
        (f"vcpu{i}", "KVM_TDX_INIT_VCPU") for i in range(4)] + [("build0", "KVM_TDX_FINALIZE_VM")]
    region_end = of_kind(log, "ioctl")[0]["t_ns"]
    assert min(r["t_ns"] for r in log if r["leaf"] == "TDH.VP.CREATE") >= region_end
    finalize = next(r for r in log if r["leaf"] == "TDH.MR.FINALIZE")
    assert min(enters(log, "vcpu0") + enters(log, "vcpu3")) >= finalize["t_ns"] + finalize["dur_ns"]


def test_without_init_vcpu_the_build_is_unchanged() -> None:
    """The default build (build_pages alone) has no vCPU setup, no measurement, no ioctl
    records."""
    text = (EXAMPLES / "build_tdr_race.toml").read_text().split("[[init_vcpu]]")[0]
    log, summary = log_of(parse(text, "t.toml"), "upstream_6_17")
    assert summary["by_leaf"]["TDH.MEM.PAGE.ADD"]["attempts"] == 8
    assert not [r for r in log if r["leaf"] in ("TDH.MR.EXTEND", "TDH.VP.CREATE")]
    assert summary["ioctls"] == 0 and summary["kvm_bugs"] == 0


# -- counts, exports, the format -------------------------------------------------------
@pytest.mark.parametrize("sc,policy", [(DEADLOCK, "upstream"), (DEADLOCK, "upstream_6_17"),
                                       (BUILD, "upstream_6_17"), (BUILD, "upstream")])
def test_the_summary_equals_the_log(sc: Scenario, policy: str) -> None:
    """Every count of the summary, the new ones included (ioctls, ioctl_errors, stalls,
    kvm_bugs), is the log's."""
    log, summary = log_of(sc, policy)
    counts = recount(log)
    assert {k: summary[k] for k in ("events", "attempts", "busy", "retries", "giveups")} == {
        k: counts[k] for k in ("events", "attempts", "busy", "retries", "giveups")}
    ioctls = of_kind(log, "ioctl")
    assert summary["ioctls"] == len(ioctls)
    assert summary["ioctl_errors"] == sum(1 for r in ioctls if r["result"] != "0")
    assert summary["stalls"] == len(of_kind(log, "stall"))
    assert summary["kvm_bugs"] == len(of_kind(log, "kvm_bug"))


@pytest.mark.parametrize("fmt", ["csv", "chrome", "perfetto"])
def test_ioctl_records_reach_every_export(fmt: str) -> None:
    """ioctl records and the new leaves go through every writer."""
    config = DEADLOCK.config(policy="upstream")
    data = b"".join(piece if isinstance(piece, bytes) else piece.encode()
                    for piece in encode(fmt, records(config, DEADLOCK, 600_000),
                                        config.to_dict()))
    assert b"ioctl" in data and b"KVM_PRE_FAULT_MEMORY" in data and b"prefault0" in data
    build = BUILD.config(policy="upstream")
    data = b"".join(piece if isinstance(piece, bytes) else piece.encode()
                    for piece in encode(fmt, records(build, BUILD, 400_000), build.to_dict()))
    assert b"TDH.VP.CREATE" in data and b"KVM_TDX_FINALIZE_VM" in data


@pytest.mark.parametrize("body,message", [
    ("[[init_vcpu]]\n[[init_vcpu]]\n", "init_vcpu[1]: one [[init_vcpu]] table at most"),
    ("[[init_vcpu]]\ntdcx_pages = 65\n", "init_vcpu[0].tdcx_pages: must be an integer from 0 to 64"),
    ("[[init_vcpu]]\nmeasure = 1\n", "init_vcpu[0].measure: must be true or false"),
    ('[[prefault]]\ngpa = "0x1000"\n', "prefault[0].at_us: missing: this key is required"),
    ('[[prefault]]\ngpa = "0x1000"\nat_us = 1\nretry_us = 0\n',
     "prefault[0].retry_us: must be an integer from 1 to 10000000"),
    ('[[prefault]]\ngpa = "0x1001"\nat_us = 1\n', "prefault[0].gpa: 0x1001 is not page-aligned"),
])
def test_bad_tables_are_refused_by_key(body: str, message: str) -> None:
    head = 'name = "t"\ndescription = "d"\n'
    with pytest.raises(ScenarioError) as err:
        parse(head + body, "t.toml")
    assert any(message in e for e in err.value.messages), err.value.messages


def test_a_free_build_retry_is_refused() -> None:
    """A PAGE.ADD called again after EBUSY must cost simulated time."""
    text = (EXAMPLES / "build_tdr_race.toml").read_text() + (
        "\n[timing]\nseamcall_ns = 0\nreenter_gap_ns = 0\nvp_entry_ns = 1\n")
    with pytest.raises(ScenarioError, match="timing.reenter_gap_ns"):
        parse(text, "t.toml")
