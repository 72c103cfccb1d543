"""2 MB private mappings (engine/huge.py): AUG and ACCEPT at 2M, the split before a partial
zap (BLOCK, TRACK, kick, DEMOTE), DEMOTE's checks, and the v19-era split that ignored
BUSY (examples/huge_demote_ignores_busy.toml), against the sources they cite."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.config import POLICIES
from engine.errors import ScenarioError
from engine.locks import OP_STATE, SEPT_ENTRY, SEPT_TREE, TDR, Step
from engine.module import host_locks
from engine.run import run
from engine.scenario import Scenario, load, parse
from tests.engine.support import logical_calls
from tests.engine.test_properties import check_chrome_raw, check_statuses

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "huge_demote_ignores_busy.toml"
END_NS = 400_000
BLOCK, TRACK, DEMOTE = "TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.DEMOTE"
REMOVE, AUG, ACCEPT = "TDH.MEM.PAGE.REMOVE", "TDH.MEM.PAGE.AUG", "TDG.MEM.PAGE.ACCEPT"
OK = "0x0000000000000000"
NOT_BLOCKED = "0xC0000B0600000001"  # TDX_GPA_RANGE_NOT_BLOCKED on RCX
NOT_DONE = "0xC0000B0800000001"  # TDX_TLB_TRACKING_NOT_DONE on RCX
ENTRY_BUSY = "0x8000020000000001"  # TDX_OPERAND_BUSY on RCX: the 2 MB entry's lock

BASE = """
name = "t"
description = "t"
[td]
vcpus = 2
[workload]
td_memory_mib = 16
[[vcpu]]
index = 0
script = [{ step = "accept", gpa = "0x200000", level = "2M" }, STEPS]
[[vcpu]]
index = 1
script = [{ step = "io", repeat = 200 }]
"""


def scenario(steps: str = '{ step = "io", repeat = 200 }', zap: str = "") -> Scenario:
    return parse(BASE.replace("STEPS", steps) + zap, "t.toml")


def log_of(sc: Scenario, fmt: str = "jsonl", **overrides: Any) -> tuple[dict[str, Any], str]:
    out = io.StringIO() if fmt != "perfetto" else io.BytesIO()
    result = run(sc.config(**overrides), sc, END_NS, out, fmt)  # type: ignore[arg-type]
    return result, out.getvalue()  # type: ignore[return-value]


def records(sc: Scenario, **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result, text = log_of(sc, **overrides)
    return result, [json.loads(line) for line in text.splitlines()]


def zap_calls(log: list[dict[str, Any]]) -> list[tuple[str | None, str | None, str | None]]:
    return [(r["leaf"], r["status"], r["outcome"]) for r in log
            if r["actor"] == "zap0" and r["kind"] in ("seamcall", "kick")]


def test_demote_and_promote_lock_sets_are_the_modules() -> None:
    """tdh_mem_page_demote / tdh_mem_page_promote (TDX 1.5.01): TDR, op-state and the SEPT
    tree shared, the 2 MB entry host-side exclusive (PROMOTE also the freed SEPT page's
    PAMT entry); module 1.0 takes the tree exclusively."""
    locks = host_locks("1.5")
    assert locks[DEMOTE] == (Step(TDR, False, 0x02), Step(OP_STATE, False, 0xAC),
                             Step(SEPT_TREE, False, 0x92), Step(SEPT_ENTRY, True, 0x01))
    assert locks["TDH.MEM.PAGE.PROMOTE"][:4] == locks[DEMOTE]
    assert Step(SEPT_TREE, True, 0x92) in host_locks("1.0")[DEMOTE]


def test_a_2m_accept_maps_the_region_with_one_aug() -> None:
    """The guest accepts at 2M: one exit, one TDH.MEM.PAGE.AUG (2M), one 2M ACCEPT of
    accept_2m_ns (512 chunks); the 512 pages are then accessible without a further fault."""
    sc = scenario('{ step = "access", gpa = "0x200000", pages = 64 }')
    _, log = records(sc)
    mine = [(r["leaf"], r["outcome"], r["dur_ns"], r.get("level")) for r in log
            if r["actor"] == "vcpu0" and r["leaf"] != "TDH.VP.ENTER"]
    assert mine == [(AUG, "success", 3_500, None), (ACCEPT, "success", 102_400, "2M")]
    enters = [r for r in log if r["actor"] == "vcpu0" and r["leaf"] == "TDH.VP.ENTER"]
    assert [r["status"] for r in enters[:-1]] == ["0x0000000000000030"]  # one EPT exit


def test_a_2m_accept_of_a_4k_mapped_region_is_a_size_mismatch() -> None:
    """4K entries already map the region: the module refuses the 2M ACCEPT with
    TDX_PAGE_SIZE_MISMATCH on RCX (0xC0000B0B00000001, outcome `error`)."""
    text = BASE.replace('{ step = "accept", gpa = "0x200000", level = "2M" }, STEPS',
                        '{ step = "access", gpa = "0x201000" }, '
                        '{ step = "accept", gpa = "0x200000", level = "2M" }')
    _, log = records(parse(text, "t.toml"))
    accepts = [(r["status"], r["outcome"]) for r in log if r["leaf"] == ACCEPT]
    assert accepts[-1] == ("0xC0000B0B00000001", "error")  # the walk's level (2M) in 31:0
    assert sum(1 for r in log if r["leaf"] == AUG) == 1  # the 4K page only


def test_a_partial_zap_splits_first_and_zaps_the_4k_part() -> None:
    """tdx_sept_split_private_spte: BLOCK of the 2 MB entry, TRACK, kick, DEMOTE, then the
    4K zap (BLOCK, TRACK, kick, REMOVE) of the page; the guest's next access to the zapped
    page faults it back at 4K, its neighbours stay mapped."""
    sc = scenario('{ step = "run", ns = 200000 }, { step = "access", gpa = "0x200000", '
                  'pages = 4 }', '[[zap]]\ngpa = "0x201000"\nat_us = 150\n')
    result, log = records(sc, policy="upstream")
    assert zap_calls(log) == [(BLOCK, OK, "success"), (TRACK, OK, "success"),
                              (None, None, None), (DEMOTE, OK, "success"),
                              (BLOCK, OK, "success"), (TRACK, OK, "success"),
                              (None, None, None), (REMOVE, OK, "success")]
    refault = [r for r in log if r["actor"] == "vcpu0" and r["leaf"] == AUG]
    assert len(refault) == 2 and result["kvm_bugs"] == 0 and result["leaked_pages"] == 0


def test_a_zap_of_the_whole_2m_removes_it_at_2m() -> None:
    """A batch covering all 512 pages: BLOCK, TRACK, kick, REMOVE of the 2 MB entry, one
    call each, no DEMOTE; the region is then unmapped (the next access needs SEPT.ADD)."""
    sc = scenario('{ step = "run", ns = 200000 }, { step = "access", gpa = "0x200000" }',
                  '[[zap]]\ngpa = "0x200000"\npages = 512\nat_us = 150\n')
    _, log = records(sc, policy="upstream")
    assert zap_calls(log) == [(BLOCK, OK, "success"), (TRACK, OK, "success"),
                              (None, None, None), (REMOVE, OK, "success")]
    later = [r["leaf"] for r in log if r["actor"] == "vcpu0" and r["t_ns"] > 150_000
             and r["leaf"] != "TDH.VP.ENTER"]
    assert later == ["TDH.MEM.SEPT.ADD", AUG, ACCEPT]


def test_demote_after_a_failed_track_is_tlb_tracking_not_done() -> None:
    """tdh_mem_page_demote checks TLB tracking like REMOVE: under `none`, whenever the
    TRACK after the BLOCK met BUSY|TD_EPOCH (a vCPU entering) and was dropped, DEMOTE
    returns TDX_TLB_TRACKING_NOT_DONE on RCX (0xC0000B0800000001, outcome `error`), a KVM
    bug, and the blocked 2 MB mapping is leaked (512 pages); whenever it succeeded, so does
    DEMOTE. (Zaps at 120..159 us meet both cases against vCPU 1's IO exits.)"""
    seen = set()
    for at_us in range(120, 160):
        sc = scenario(zap=f'[[zap]]\ngpa = "0x201000"\nat_us = {at_us}\n')
        result, log = records(sc, policy="none")
        calls = zap_calls(log)
        assert calls[0] == (BLOCK, OK, "success") and calls[2] == (None, None, None)
        if calls[1] == (TRACK, OK, "success"):
            assert calls[3] == (DEMOTE, OK, "success")
            seen.add("tracked")
            continue
        assert calls[1] == (TRACK, "0x80000200000000A9", "giveup")
        assert calls[3] == (DEMOTE, NOT_DONE, "error")
        bugs = [(r["leaf"], r["failed_status"]) for r in log if r["kind"] == "kvm_bug"]
        assert bugs[0] == (DEMOTE, NOT_DONE)
        assert result["leaked_pages"] >= 512
        seen.add("not tracked")
    assert seen == {"tracked", "not tracked"}


# -- the gallery file: the v19-era split path against mainline's -------------------------
def test_example_names_its_source_and_policies() -> None:
    sc = load(EXAMPLE)
    assert "canonical/tdx#213" in sc.source and "yan.y.zhao@intel.com" in sc.source
    assert sc.policies == ("bounded", "upstream")


def test_v19_split_ignores_the_busy_block_and_demote_is_refused() -> None:
    """bounded with demote_ignores_busy (canonical/tdx#213: __set_private_spte_present
    goes on after tdx_sept_zap_private_spte's -EAGAIN): the BLOCK of the 2 MB entry meets
    the guest's 2M ACCEPT holding it (BUSY on RCX), is given up, and DEMOTE is issued on
    an entry that was never blocked: tdh_mem_page_demote returns TDX_GPA_RANGE_NOT_BLOCKED
    on RCX, outcome `error`, KVM_BUG_ON; the 4K page is never zapped."""
    result, log = records(load(EXAMPLE), policy="bounded")
    calls = zap_calls(log)
    assert calls[:4] == [(BLOCK, ENTRY_BUSY, "giveup"), (TRACK, OK, "success"),
                         (None, None, None), (DEMOTE, NOT_BLOCKED, "error")]
    assert (REMOVE, OK, "success") not in calls
    bugs = [(r["leaf"], r["failed_status"]) for r in log if r["kind"] == "kvm_bug"]
    assert bugs == [(DEMOTE, NOT_BLOCKED)] and result["kvm_bugs"] == 1


def test_without_the_knob_bounded_leaves_the_mapping_at_2m() -> None:
    """The same race with the v19 series' `if (!ret)` kept (no knob): the split fails
    with its BLOCK, no DEMOTE is issued, the mapping stays at 2M, and no KVM bug."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("demote_ignores_busy = true", "")
    result, log = records(parse(text, EXAMPLE.name), policy="bounded")
    assert DEMOTE not in [leaf for leaf, _, _ in zap_calls(log)]
    assert result["kvm_bugs"] == 0 and result["leaked_pages"] == 0


def test_upstream_kicks_retries_the_block_and_splits() -> None:
    """upstream (Yan Zhao's series: tdh_do_no_vcpus): the BUSY BLOCK sets the no-entry
    flag and kicks; the kick's interrupt stops the guest's 2M ACCEPT after its current 4K
    chunk (tdg_mem_page_accept), so the one retry succeeds; TRACK, DEMOTE and the 4K zap
    follow, with no KVM bug (the knob changes nothing). The guest's resumed 2M ACCEPT finds
    4K entries now: TDX_PAGE_SIZE_MISMATCH."""
    result, log = records(load(EXAMPLE), policy="upstream")
    kick = (None, None, None)
    # The TRACK meets vCPU 1 entering (BUSY|TD_EPOCH): kick and retry, as the series does.
    assert zap_calls(log) == [
        (BLOCK, ENTRY_BUSY, "busy"), kick, (BLOCK, OK, "success"),
        (TRACK, "0x80000200000000A9", "busy"), kick, (TRACK, OK, "success"), kick,
        (DEMOTE, OK, "success"),
        (BLOCK, OK, "success"), (TRACK, OK, "success"), kick, (REMOVE, OK, "success")]
    kick_at = next(r["t_ns"] for r in log if r["kind"] == "kick")
    accept = next(r for r in log if r["leaf"] == ACCEPT)
    assert accept["interrupted"] is True and accept["pages"] < 512
    assert kick_at <= accept["t_ns"] + accept["dur_ns"] <= kick_at + 200  # one 4K chunk
    resumed = [(r["status"], r["outcome"], r.get("level")) for r in log
               if r["leaf"] == ACCEPT][1]
    assert resumed == ("0xC0000B0B00000001", "error", "2M")
    assert result["kvm_bugs"] == 0


def test_an_interrupted_2m_accept_resumes_where_it_stopped() -> None:
    """The accept counter keeps the chunks done: under bounded (no no-entry flag) the
    kicks stop the ACCEPT twice, and the three TDCALLs zero 512 pages in all, the last
    one uninterrupted, after which the region's pages are ACCEPTED (no #VE, no ACCEPT)."""
    _, log = records(load(EXAMPLE), policy="bounded")
    accepts = [r for r in log if r["leaf"] == ACCEPT]
    assert [r.get("interrupted", False) for r in accepts] == [True, True, False]
    assert sum(r["pages"] for r in accepts) == 512


@pytest.mark.parametrize("policy", POLICIES)
def test_no_modelled_path_issues_promote(policy: str) -> None:
    """The 2025 series splits and never merges, so no path issues PROMOTE (the 2023
    series' fault-path merge is not modelled)."""
    _, log = records(load(EXAMPLE), policy=policy)
    assert all(r["leaf"] != "TDH.MEM.PAGE.PROMOTE" for r in log)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "chrome", "perfetto"])
def test_demote_goes_through_every_export_and_the_summary(fmt: str) -> None:
    """The summary's by_leaf counts DEMOTE as the log does; each format carries it."""
    result, text = log_of(load(EXAMPLE), fmt, policy="upstream")
    assert result["by_leaf"][DEMOTE] == {"attempts": 1, "busy": 0, "retries": 0, "giveups": 0}
    body = text if isinstance(text, str) else text.decode("latin-1")
    assert DEMOTE in body


@pytest.mark.parametrize("policy", POLICIES)
def test_the_examples_log_keeps_the_contracts_invariants(policy: str) -> None:
    """Under every policy: statuses and outcomes as the contract says, t_ns in order,
    logical calls continue properly (bounded: at most retry_max + 1 attempts), and the
    Chrome trace nests on every track (the shortened 2M ACCEPT records included)."""
    sc = load(EXAMPLE)
    _, log = records(sc, policy=policy)
    check_statuses(log)
    assert [r["t_ns"] for r in log] == sorted(r["t_ns"] for r in log)
    calls = list(logical_calls(log))
    if policy == "bounded":
        assert max(len(c) for c in calls) <= sc.config().retry_max + 1
    check_chrome_raw(log_of(sc, "chrome", policy=policy)[1], until_ns=END_NS)


def test_the_log_is_deterministic() -> None:
    a = log_of(load(EXAMPLE), policy="bounded")[1]
    assert a == log_of(load(EXAMPLE), policy="bounded")[1]


@pytest.mark.parametrize("change, error", [
    ('level = "1G"', "t.toml: vcpu[0].script[0].level: '1G'; accepted: \"4K\" or \"2M\""),
    ('gpa = "0x201000", level = "2M"',
     "t.toml: vcpu[0].script[0].gpa: 0x201000 is not 2 MB-aligned; accepted with level "
     "\"2M\": a multiple of 0x200000"),
    ('gpa = "0xe00000", level = "2M"',
     "t.toml: vcpu[0].script[0].gpa: 0xe00000 + 2 MB ends beyond the guest's memory"),
])
def test_bad_accept_levels_are_refused_by_name(change: str, error: str) -> None:
    text = BASE.replace('gpa = "0x200000", level = "2M"', change)
    text = text.replace('{ step = "accept", level', '{ step = "accept", gpa = "0x200000", level')
    with pytest.raises(ScenarioError) as err:
        parse(text.replace("STEPS", '{ step = "io" }').replace("td_memory_mib = 16",
                                                              "td_memory_mib = 15"), "t.toml")
    assert err.value.messages == [error]


def test_demote_ignores_busy_must_be_a_boolean() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario(zap='[[zap]]\ngpa = "0x201000"\nat_us = 10\ndemote_ignores_busy = 1\n')
    assert err.value.messages == ["t.toml: zap[0].demote_ignores_busy: must be true or false"]


def test_a_host_that_gives_up_starves_a_2m_accept_until_the_hp_timeout() -> None:
    """Module 1.5's host priority: the host's failed BLOCK sets the 2 MB entry's HP bit;
    under `none` (and without the knob) nothing on the host side retries, so the bit stays
    set and the guest's resumed 2M ACCEPT gets BUSY_HOST_PRIORITY (0x8000020400000001) on
    every try until HP_LOCK_TIMEOUT, when the module forces a TD exit: an hp_timeout."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("demote_ignores_busy = true", "")
    text += "\n[timing]\nhp_lock_timeout_ns = 10000000\n"
    sc = parse(text, EXAMPLE.name)
    out = io.StringIO()
    result = run(sc.config(policy="none"), sc, 12_000_000, out)
    log = [json.loads(line) for line in out.getvalue().splitlines()]
    tries = [r for r in log if r["leaf"] == ACCEPT and r["outcome"] == "giveup"]
    assert {r["status"] for r in tries} == {"0x8000020400000001"}
    first = tries[0]["t_ns"]
    timeouts = [r for r in log if r["kind"] == "hp_timeout"]
    assert result["hp_timeouts"] == len(timeouts) == 1
    assert first + 10_000_000 <= timeouts[0]["t_ns"] < first + 10_100_000
