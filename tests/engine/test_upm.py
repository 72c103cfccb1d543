"""The UPM parallel stress test's mixes (tdx_upm_parallel_test.c): #VE handlers that do not
accept (`disallow_accept`: the guest spins on the #VE at one RIP; `allow_mmio`: the access
is skipped), a host thread flipping a range between private and shared
(KVM_SET_MEMORY_ATTRIBUTES, engine.attributes), and examples/upm_parallel_soak.toml, eight
vCPUs under four host threads that must run for seconds without a hang."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ScenarioError
from engine.run import run
from engine.scenario import Scenario, load, parse

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "examples" / "upm_parallel_soak.toml"
HEAD = """
name = "t"
description = "a test"
[td]
vcpus = {vcpus}
[workload]
td_memory_mib = 16
"""


def log_of(body: str, end_us: int, vcpus: int = 1, policy: str = "upstream",
           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sc = parse(HEAD.format(vcpus=vcpus) + body, "t.toml")
    return run_scenario(sc, end_us * 1000, policy)


def run_scenario(sc: Scenario, end_ns: int, policy: str) -> tuple[list[dict[str, Any]],
                                                                   dict[str, Any]]:
    out = io.StringIO()
    summary = run(sc.config(policy=policy), sc, end_ns, out)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def leaves(log: list[dict[str, Any]], actor: str = "vcpu0") -> list[str]:
    return [r["leaf"] for r in log if r["kind"] in ("seamcall", "tdcall") and r["actor"] == actor]


ONE_ACCESS = """
[[vcpu]]
index = 0
ve_handler = "{handler}"
script = [{{ step = "access", rip = 1, gpa = "0x200000" }}, {{ step = "io", rip = 2 }}]
"""


def test_disallow_accept_spins_on_the_ve_inside_the_guest() -> None:
    """The handler returns without TDG.MEM.PAGE.ACCEPT: the access takes the #VE again and
    again at one RIP, every ve_ns, without a TD exit (the VP.ENTER stays open to the end),
    so the zero-step filter counts nothing, and the script never reaches its IO."""
    log, summary = log_of(ONE_ACCESS.format(handler="disallow_accept"), 200)
    assert leaves(log) == ["TDH.VP.ENTER", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG",
                           "TDH.VP.ENTER"]
    entered = log[-1]["t_ns"]
    assert log[-1]["dur_ns"] == 200_000 - entered  # still in the guest at the end
    assert summary["ve_not_accepted"] == (200_000 - entered - 2_000) // 1_000 + 1
    assert not [r for r in log if r["kind"].startswith("zero_step")]


def test_allow_mmio_skips_the_access_and_leaves_the_page_pending() -> None:
    """The handler treats the #VE as MMIO: the access is skipped (one ve_ns), the script
    goes on to its IO exit, the page is never accepted."""
    log, summary = log_of(ONE_ACCESS.format(handler="allow_mmio"), 200)
    assert leaves(log) == ["TDH.VP.ENTER", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG",
                           "TDH.VP.ENTER", "TDH.VP.ENTER"]
    enters = [r for r in log if r["leaf"] == "TDH.VP.ENTER"]
    assert enters[1]["status"] == "0x000000000000001E"  # the IO exit, after the skip
    assert enters[1]["dur_ns"] == 2_000 + 1_000 + 2_000  # entry, the #VE, the exit
    assert summary["ve_skipped"] == 1 and summary["ve_not_accepted"] == 0


def test_a_kick_takes_a_spinning_vcpu_out_and_it_spins_again() -> None:
    """A zap of the spun-on page kicks the vCPU out of its #VE loop; the page is removed,
    so the re-entered access exits, KVM AUGs it again, and the guest spins again."""
    body = ONE_ACCESS.format(handler="disallow_accept") + """
[[zap]]
gpa = "0x200000"
at_us = 50
"""
    log, summary = log_of(body, 200)
    assert leaves(log).count("TDH.MEM.PAGE.AUG") == 2
    assert leaves(log, "zap0") == ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK",
                                   "TDH.MEM.PAGE.REMOVE"]
    assert summary["stalls"] == 0 and summary["kvm_bugs"] == 0


FLIP = """
[[vcpu]]
index = 0
script = [{ step = "loop", rip = 1, gpa_start = "0x200000", pages = 4 },
          { step = "run", ns = 100000 },
          { step = "loop", rip = 2, gpa_start = "0x200000", pages = 4 }]

[[attributes]]
gpa = "0x200000"
pages = 4
every_us = 60
count = 2
"""


def test_set_memory_attributes_zaps_going_shared_and_a_private_access_exits() -> None:
    """Going shared (at 60 us), the range is zapped first (BLOCK x 4, TRACK, kick, REMOVE x 4
    under mmu_lock write) inside an invalidation window; back to private (at 120 us) there
    is nothing to zap. The guest's accesses after that find the pages unmapped and fault
    them in again; `attributes` records mark both changes, counted in the summary."""
    log, summary = log_of(FLIP, 300)
    changes = [(r["t_ns"], r["action"], r["pages"]) for r in log if r["kind"] == "attributes"]
    assert changes == [(60_000, "shared", 4), (120_000, "private", 4)]
    assert summary["attribute_changes"] == 2
    assert leaves(log, "zap0") == ["TDH.MEM.RANGE.BLOCK"] * 4 + ["TDH.MEM.TRACK"] + [
        "TDH.MEM.PAGE.REMOVE"] * 4
    assert leaves(log).count("TDH.MEM.PAGE.AUG") == 8
    assert not [r for r in log if r["kind"] == "memory_fault"]


def test_a_private_access_while_shared_exits_to_userspace() -> None:
    """While the attributes say shared, the guest's private access exits to userspace
    (KVM_EXIT_MEMORY_FAULT), which converts the page back and re-enters."""
    body = FLIP.replace('{ step = "run", ns = 100000 }', '{ step = "run", ns = 40000 }')
    log, _ = log_of(body, 300)
    faults = [r for r in log if r["kind"] == "memory_fault"]
    assert faults and faults[0]["action"] == "convert" and 60_000 < faults[0]["t_ns"] < 120_000


@pytest.mark.parametrize("body,message", [
    ('[[vcpu]]\nindex = 0\nve_handler = "ignore"\n',
     "vcpu[0].ve_handler: 'ignore'; accepted: accept, disallow_accept, allow_mmio"),
    ('[[attributes]]\ngpa = 0\n', "attributes[0].every_us: missing"),
    ('[[attributes]]\ngpa = 0\nevery_us = 0\n', "attributes[0].every_us: must be an integer"),
    ('[[attributes]]\ngpa = 0\nevery_us = 5\nwhen = 1\n', "attributes[0].when: unknown key"),
])
def test_bad_keys_are_refused_naming_them(body: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(HEAD.format(vcpus=1) + body, "t.toml")


def test_a_free_ve_spin_is_refused_up_front() -> None:
    with pytest.raises(ScenarioError, match="timing.ve_ns"):
        parse(HEAD.format(vcpus=1) + '[timing]\nve_ns = 0\n[[vcpu]]\nindex = 0\n'
              've_handler = "disallow_accept"\n', "t.toml")


# -- the soak --------------------------------------------------------------------------------
def check_soak(end_ns: int, policy: str) -> dict[str, Any]:
    """The soak ran to its end with no hang and every mix at work."""
    soak = load(SOAK)
    log, summary = run_scenario(soak, end_ns, policy)
    assert summary["sim_ns"] == end_ns
    assert summary["stalls"] == 0 and summary["vm_dead"] == 0
    assert not [r for r in log if r["kind"] in ("stall", "vm_dead")]
    if policy == "upstream":
        assert summary["kvm_bugs"] == 0
    last = end_ns - end_ns // 10
    for i in range(8):  # every vCPU still enters the guest late in the run
        assert any(r["actor"] == f"vcpu{i}" and r["t_ns"] >= last for r in log), i
    accepts = {r["actor"] for r in log if r["leaf"] == "TDG.MEM.PAGE.ACCEPT"}
    assert {"vcpu0", "vcpu1"} <= accepts and not accepts & {"vcpu2", "vcpu3", "vcpu4", "vcpu5"}
    assert summary["ve_not_accepted"] > 0 and summary["ve_skipped"] > 0
    attrs = {(r["actor"], r["leaf"]) for r in log if r["kind"] == "tdcall"
             and r["outcome"] == "success" and "ATTR" in r["leaf"]}
    assert attrs == {("vcpu6", "TDG.MEM.PAGE.ATTR.WR"), ("vcpu7", "TDG.MEM.PAGE.ATTR.RD")}
    changes = [r for r in log if r["kind"] == "attributes"]
    assert summary["attribute_changes"] == len(changes)
    assert {(r["actor"], r["action"]) for r in changes} == {
        (f"attributes{k}", a) for k in (0, 1) for a in ("shared", "private")}
    return summary


@pytest.mark.parametrize("policy", ["upstream", "bounded"])
def test_the_soak_runs_without_a_hang_short(policy: str) -> None:
    check_soak(30_000_000, policy)


@pytest.mark.slow
def test_the_soak_runs_two_simulated_seconds_without_a_hang() -> None:
    summary = check_soak(load(SOAK).duration_us * 1000, "upstream")
    assert summary["sim_ns"] == 2_000_000_000


def test_attributes_records_reach_every_export_format() -> None:
    """The `attributes` instants are rows of the CSV, instants of the Chrome trace and
    events of the Perfetto trace, with their action."""
    import csv

    from engine.export import chunks, encode
    from engine.run import records

    sc = parse(HEAD.format(vcpus=1) + FLIP, "t.toml")
    config = sc.config()
    rows = list(csv.DictReader(io.StringIO("".join(chunks("csv", records(config, sc, 300_000))))))
    assert [json.loads(r["extra"])["action"] for r in rows if r["kind"] == "attributes"] == [
        "shared", "private"]
    chrome = json.loads("".join(chunks("chrome", records(config, sc, 300_000))))
    instants = [e for e in chrome["traceEvents"] if e.get("cat") == "attributes"]
    assert [(e["ph"], e["args"]["action"]) for e in instants] == [("i", "shared"), ("i", "private")]
    trace = b"".join(encode("perfetto", records(config, sc, 300_000), config.to_dict()))
    assert b"attributes" in trace and b"private" in trace
