"""Guest attribute TDCALLs (engine.guestrun: `attr_rd`, `attr_wr` script steps): the SEPT
entry lock, guest side (tdg_mem_page_attr_rd/_wr). A host RANGE.BLOCK meeting the
guest-held entry fails and sets host priority; the guest's next attempt gets
TDX_OPERAND_BUSY_HOST_PRIORITY; kept there for HP_LOCK_TIMEOUT, the module forces a TD
exit with TDX_HOST_PRIORITY_BUSY_TIMEOUT. Under `upstream` the zap path's kick takes the
guest out before its next attempt and the retried BLOCK wins: the guest never sees HP."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from engine.errors import ScenarioError
from engine.run import run
from engine.scenario import parse

HEAD = """
name = "t"
description = "a test"
[td]
vcpus = 1
[timing]
hp_lock_timeout_ns = 10000000
[workload]
td_memory_mib = 16
"""
ATTR_LOOP = """
[[vcpu]]
index = 0
script = [{{ step = "access", rip = 1, gpa = "0x200000" }},
          {{ step = "{kind}", rip = 2, gpa = "0x200000", hold_ns = 5000, repeat = {repeat} }}]
"""
ZAP_AT_50 = """
[[zap]]
gpa = "0x200000"
at_us = 50
"""
HOST_BUSY = "0x8000020000000001"  # OPERAND_BUSY, operand id RCX: the SEPT entry
HP_BUSY = "0x8000020400000001"  # OPERAND_BUSY_HOST_PRIORITY on the same entry
HP_TIMEOUT_EXIT = "0x9000020500000000"


def log_of(body: str, policy: str, end_us: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sc = parse(HEAD + body, "t.toml")
    out = io.StringIO()
    summary = run(sc.config(policy=policy), sc, end_us * 1000, out)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def calls(log: list[dict[str, Any]], leaf: str) -> list[dict[str, Any]]:
    return [r for r in log if r["leaf"] == leaf and r["kind"] in ("seamcall", "tdcall")]


@pytest.mark.parametrize("kind,leaf", [("attr_rd", "TDG.MEM.PAGE.ATTR.RD"),
                                       ("attr_wr", "TDG.MEM.PAGE.ATTR.WR")])
def test_an_attribute_tdcall_holds_the_entry_for_a_round_trip_plus_hold(
        kind: str, leaf: str) -> None:
    """On an accepted page each TDCALL succeeds, lasting seamcall_ns + hold_ns, back to
    back, each its own logical call."""
    log, _ = log_of(ATTR_LOOP.format(kind=kind, repeat=5), "upstream", 200)
    attrs = calls(log, leaf)
    assert [(r["status"], r["dur_ns"], r["attempt"], r["outcome"]) for r in attrs] == [
        ("0x0000000000000000", 6000, 1, "success")] * 5
    starts = [r["t_ns"] for r in attrs]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [6000] * 4


def test_an_attribute_tdcall_on_an_unmapped_page_exits_and_does_not_accept() -> None:
    """ATTR.RD of a page never AUGed is an EPT-violation exit (basic_ept_violation_exit):
    KVM AUGs it, the guest's ATTR.RD then succeeds on the PENDING page without accepting
    it, and the later access takes the #VE whose handler ACCEPTs."""
    body = """
[[vcpu]]
index = 0
script = [{ step = "attr_rd", rip = 2, gpa = "0x200000" },
          { step = "access", rip = 3, gpa = "0x200000" }]
"""
    log, _ = log_of(body, "upstream", 200)
    order = [r["leaf"] for r in log if r["kind"] in ("seamcall", "tdcall")]
    assert order[:6] == ["TDH.VP.ENTER", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG",
                         "TDH.VP.ENTER", "TDG.MEM.PAGE.ATTR.RD", "TDG.MEM.PAGE.ACCEPT"]
    assert log[0]["status"] == "0x0000000000000030"  # the ATTR.RD's EPT-violation exit


def test_bounded_block_on_a_guest_held_entry_sets_host_priority_until_the_hp_timeout() -> None:
    """A BLOCK meeting the guest's ATTR.WR fails on the SEPT entry (BUSY, operand RCX) and,
    module 1.5, sets its host-priority bit; bounded does not retry that status and gives
    up, so the bit stays: the guest's next attempt and every one after get
    BUSY_HOST_PRIORITY, and after hp_lock_timeout_ns (10 ms here) the module forces a TD
    exit with TDX_HOST_PRIORITY_BUSY_TIMEOUT (an hp_timeout record naming ATTR.WR)."""
    log, summary = log_of(ATTR_LOOP.format(kind="attr_wr", repeat=100000) + ZAP_AT_50,
                          "bounded", 25_000)
    blocks = calls(log, "TDH.MEM.RANGE.BLOCK")
    assert [(b["t_ns"], b["status"], b["outcome"]) for b in blocks] == [
        (50_000, HOST_BUSY, "giveup")]
    after = [r for r in calls(log, "TDG.MEM.PAGE.ATTR.WR") if r["t_ns"] > 50_000]
    assert after[0]["status"] == HP_BUSY and after[0]["outcome"] == "giveup"
    assert {r["status"] for r in after} == {HP_BUSY}
    timeouts = [r for r in log if r["kind"] == "hp_timeout"]
    assert summary["hp_timeouts"] == len(timeouts) == 2
    first_hp = after[0]["t_ns"]
    assert timeouts[0]["leaf"] == "TDG.MEM.PAGE.ATTR.WR"
    assert timeouts[0]["t_ns"] - first_hp >= 10_000_000
    forced = [r for r in calls(log, "TDH.VP.ENTER") if r["status"] == HP_TIMEOUT_EXIT]
    assert len(forced) == 2 and all(r["outcome"] == "error" for r in forced)


def test_upstream_kicks_the_guest_out_and_its_retried_block_wins() -> None:
    """Under upstream the failed BLOCK sets the no-entry flag and kicks: the kick waits for
    the guest's TDCALL to return and its exit, the one retry succeeds and clears host
    priority, so the guest never gets BUSY_HOST_PRIORITY and no hp_timeout happens; the
    zap removes the page, the guest's next ATTR.WR exits and KVM faults it back in."""
    log, summary = log_of(ATTR_LOOP.format(kind="attr_wr", repeat=100000) + ZAP_AT_50,
                          "upstream", 25_000)
    blocks = calls(log, "TDH.MEM.RANGE.BLOCK")
    assert [(b["status"], b["attempt"], b["outcome"]) for b in blocks] == [
        (HOST_BUSY, 1, "busy"), ("0x0000000000000000", 2, "success")]
    assert [r["outcome"] for r in calls(log, "TDH.MEM.PAGE.REMOVE")] == ["success"]
    assert HP_BUSY not in {r["status"] for r in calls(log, "TDG.MEM.PAGE.ATTR.WR")}
    assert summary["hp_timeouts"] == 0 and summary["kvm_bugs"] == 0
    augs = calls(log, "TDH.MEM.PAGE.AUG")
    assert len(augs) == 2 and augs[1]["t_ns"] > blocks[1]["t_ns"]


def test_attribute_steps_are_validated_naming_the_key() -> None:
    bad = """
[[vcpu]]
index = 0
script = [{ step = "attr_wr", gpa = "0x200001", hold_ns = -1 },
          { step = "attr_rd" },
          { step = "attr_rd", gpa = 0, pages = 2 }]
"""
    with pytest.raises(ScenarioError) as err:
        parse(HEAD + bad, "t.toml")
    text = str(err.value)
    assert "vcpu[0].script[0].hold_ns: must be an integer from 0" in text
    assert "vcpu[0].script[0].gpa: 0x200001 is not page-aligned" in text
    assert "vcpu[0].script[1].gpa: missing for step 'attr_rd'" in text
    assert "vcpu[0].script[2].pages: unknown key for step 'attr_rd'" in text
