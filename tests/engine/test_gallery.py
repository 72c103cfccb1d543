"""The race gallery (engine/gallery.py, docs/gallery.md): the page is what the example files
give, every example is a runnable entry, and this module's own races happen as the kernel
threads and the module source say."""

from __future__ import annotations

import difflib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ScenarioError
from engine.gallery import COMMAND, Outcome, gallery_ns, main, outcome, policies_of, render
from engine.run import records, run
from engine.scenario import Scenario, load, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAGE = ROOT / "docs" / "gallery.md"
FILES = sorted(EXAMPLES.glob("*.toml"))
# A gallery run past this many records would make the page (and this test) slow: such a
# file sets a shorter `gallery_duration_us`.
MAX_RECORDS = 100_000


def test_the_page_is_what_the_files_give() -> None:
    """docs/gallery.md equals the page generated afresh from examples/*.toml."""
    want = render(EXAMPLES, ROOT)
    got = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if got != want:
        diff = "".join(list(difflib.unified_diff(
            got.splitlines(True), want.splitlines(True), "docs/gallery.md", "generated"))[:40])
        pytest.fail(f"docs/gallery.md is out of date: run `{COMMAND}` in the repository "
                    f"root and commit the page\n{diff}")


def test_every_example_has_a_section_with_a_line_per_policy() -> None:
    page = PAGE.read_text(encoding="utf-8")
    names = [load(path).name for path in FILES]
    assert len(set(names)) == len(names), "two example files share a scenario name"
    sections = page.split("\n## ")[1:]
    assert [s.splitlines()[0] for s in sections] == names
    for path, section in zip(FILES, sections, strict=True):
        scenario = load(path)
        lines = [line for line in section.splitlines() if line.startswith("- `")]
        assert [line.split("`")[1] for line in lines] == list(policies_of(scenario))
        assert f"`examples/{path.name}`" in section
        assert f"Source: {scenario.source}" in section


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_example_is_an_entry(path: Path) -> None:
    """Each file parses, says where it comes from, names policies to run under, and each
    run reaches its gallery end within a bounded number of records."""
    scenario = load(path)
    assert scenario.source.strip(), f"{path.name}: no `source` (a kernel thread or commit)"
    assert policies_of(scenario)
    end_ns = gallery_ns(scenario)
    for policy in policies_of(scenario):
        count = 0
        last = 0
        for rec in records(scenario.config(policy=policy), scenario, end_ns):
            count += 1
            last = max(last, rec[0])
            assert count <= MAX_RECORDS, (
                f"{path.name} under {policy}: more than {MAX_RECORDS} records in "
                f"{end_ns // 1000} us; set a shorter gallery_duration_us")
        assert last <= end_ns


def test_the_zero_step_selftest_cites_its_thread() -> None:
    """The kvm list thread of 2024-09-25, by Message-ID, in the file and the how-to."""
    message_id = "ZvPrqMj1BWrkkwqN@yzhao56-desk.sh.intel.com"
    scenario = load(EXAMPLES / "zero_step_selftest.toml")
    assert message_id in scenario.source and "2024-09-25" in scenario.source
    assert message_id in (ROOT / "docs" / "howto-selftest.md").read_text(encoding="utf-8")


HEAD = 'name = "x"\ndescription = "d"\nduration_us = 500\n'


def test_gallery_duration_shortens_the_run() -> None:
    assert gallery_ns(parse(HEAD)) == 500_000
    assert gallery_ns(parse("gallery_duration_us = 20\n" + HEAD)) == 20_000
    for bad in ("0", "501", '"20"', "true"):
        with pytest.raises(ScenarioError) as caught:
            parse(f"gallery_duration_us = {bad}\n" + HEAD, "f.toml")
        assert caught.value.messages == [
            "f.toml: gallery_duration_us: must be an integer from 1 to the file's duration_us"]


def test_a_line_counts_what_is_not_zero_and_any_new_record_kind() -> None:
    """Stalls, KVM bugs, errors and dead VMs are named; a record kind the gallery does not
    know (a later feature's) is still counted by its name, by the `result` or `action`
    its records carry when they do; the file's own host-actor instants are not."""
    out = Outcome()
    rows: list[tuple[Any, ...]] = [
        (0, 1000, "seamcall", "zap0", "TDH.MEM.TRACK", 0x80000200000000A9, "TD_EPOCH", 1,
         "busy", None),
        (1000, 1000, "seamcall", "zap0", "TDH.MEM.TRACK", 0, None, 2, "success", None),
        (2000, 1000, "seamcall", "zap0", "TDH.MEM.PAGE.REMOVE", 0xC0000B0800000000, None, 1,
         "error", None),
        (2000, 0, "kvm_bug", "zap0", "TDH.MEM.PAGE.REMOVE", None, None, None, None,
         {"failed_status": "0xC0000B0800000000"}),
        (3000, 0, "stall", "memslot0", None, None, None, None, None,
         {"waits_on": ["vcpu1"], "why": "SRCU grace period"}),
        (4000, 0, "prefault", "prefault0", None, None, None, None, None, {"result": "EAGAIN"}),
        (4500, 0, "prefault", "prefault0", None, None, None, None, None, {"result": "ok"}),
        (4600, 0, "prefault", "prefault0", None, None, None, None, None, {"result": "EAGAIN"}),
        (4700, 0, "flip", "flip0", None, None, None, None, None, None),
        (4800, 0, "ioctl", "prefault0", None, None, None, None, None,
         {"ioctl": "KVM_PRE_FAULT_MEMORY", "result": "-EAGAIN"}),
        (4000, 0, "memslot", "memslot0", None, None, None, None, None, {"action": "delete"}),
    ]
    for rec in rows:
        out.add(rec)
    assert out.line() == (
        "3 attempts; BUSY 1 TD_EPOCH on TDH.MEM.TRACK; 1 retry; errors: 1 "
        "TDX_TLB_TRACKING_NOT_DONE on TDH.MEM.PAGE.REMOVE; KVM bugs: 1 TDH.MEM.PAGE.REMOVE; "
        "stall: memslot0 waits on vcpu1 (SRCU grace period); 1 flip; "
        "ioctl: 1 KVM_PRE_FAULT_MEMORY -> -EAGAIN; prefault: 2 EAGAIN, 1 ok")
    assert Outcome().line() == "0 attempts; no BUSY"


def test_the_command_writes_and_checks_the_page(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "one.toml").write_text(
        HEAD + 'source = "here"\npolicies = ["none", "upstream"]\n', encoding="utf-8")
    page = tmp_path / "gallery.md"
    args = ["--examples", str(examples), "--out", str(page)]
    assert main([*args, "--check"]) == 1
    assert f"run `{COMMAND}`" in capsys.readouterr().err
    assert not page.exists()
    assert main(args) == 0
    text = page.read_text(encoding="utf-8")
    assert "\n## x\n" in text and "\n- `none`: " in text and "\n- `upstream`: " in text
    assert main([*args, "--check"]) == 0
    (examples / "two.toml").write_text('name = "y"\nduration_us = 0\n', encoding="utf-8")
    assert main([*args, "--check"]) == 2
    err = capsys.readouterr().err
    assert "two.toml: description: required" in err and "two.toml: duration_us:" in err
    with pytest.raises(SystemExit) as caught:
        main(["--examples", str(tmp_path / "nope")])
    assert caught.value.code == 2
    assert "--examples" in capsys.readouterr().err


# -- the gallery's own races -----------------------------------------------------------------
def log_of(name: str, policy: str) -> list[dict[str, Any]]:
    scenario: Scenario = load(EXAMPLES / name)
    out = io.StringIO()
    run(scenario.config(policy=policy), scenario, gallery_ns(scenario), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def calls(log: list[dict[str, Any]], leaf: str) -> list[dict[str, Any]]:
    return [r for r in log if r["kind"] in ("seamcall", "tdcall") and r["leaf"] == leaf]


TRACK, REMOVE, BLOCK = "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE", "TDH.MEM.RANGE.BLOCK"
ACCEPT, ENTER, AUG = "TDG.MEM.PAGE.ACCEPT", "TDH.VP.ENTER", "TDH.MEM.PAGE.AUG"
BUSY_TD_EPOCH = "0x80000200000000A9"


def test_bounded_spins_on_track_while_vcpus_keep_entering() -> None:
    """v19's tdx_track(): TRACK again at once while it returns OPERAND_BUSY, no cap: with
    twelve vCPUs entering, dozens of BUSY TD_EPOCH, never a give-up, then one success,
    a kick, and every REMOVE succeeds."""
    log = log_of("track_vs_entering.toml", "bounded")
    tracks = calls(log, TRACK)
    busy, last = tracks[:-1], tracks[-1]
    assert len(busy) >= 20
    assert all(r["status"] == BUSY_TD_EPOCH and r["outcome"] == "busy" for r in busy)
    assert last["outcome"] == "success"
    kicks = [r for r in log if r["kind"] == "kick"]
    assert len(kicks) == 1 and kicks[0]["t_ns"] >= last["t_ns"] + last["dur_ns"]
    assert [r["outcome"] for r in calls(log, REMOVE)] == ["success"] * 4
    assert not [r for r in log if r["kind"] == "kvm_bug"]


def test_upstream_tracks_once_then_kicks_and_retries_once() -> None:
    """Mainline's tdx_track(): one BUSY; the no-entry flag, a kick, one retry that
    succeeds (no vCPU enters in between), the kick after TRACK; no KVM bug."""
    log = log_of("track_vs_entering.toml", "upstream")
    first, retry = calls(log, TRACK)
    assert (first["status"], first["outcome"], first["attempt"]) == (BUSY_TD_EPOCH, "busy", 1)
    assert (retry["outcome"], retry["attempt"]) == ("success", 2)
    kicks = [r for r in log if r["kind"] == "kick"]
    assert len(kicks) == 2
    assert first["t_ns"] < kicks[0]["t_ns"] and kicks[0]["t_ns"] + kicks[0]["dur_ns"] <= retry["t_ns"]
    assert kicks[1]["t_ns"] >= retry["t_ns"] + retry["dur_ns"]
    entered = [r for r in calls(log, ENTER)
               if first["t_ns"] < r["t_ns"] < retry["t_ns"] + retry["dur_ns"]]
    assert entered == []
    assert [r["outcome"] for r in calls(log, REMOVE)] == ["success"] * 4
    assert not [r for r in log if r["kind"] == "kvm_bug"]


def test_a_track_given_up_leaves_every_remove_untracked() -> None:
    """Under `none` the one BUSY TRACK is handed back: every REMOVE then fails with
    TDX_TLB_TRACKING_NOT_DONE, a KVM_BUG_ON each."""
    log = log_of("track_vs_entering.toml", "none")
    assert [r["outcome"] for r in calls(log, TRACK)] == ["giveup"]
    assert [r["status"] for r in calls(log, REMOVE)] == ["0xC0000B0800000001"] * 4
    assert len([r for r in log if r["kind"] == "kvm_bug"]) == 4


def accept_race(policy: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any],
                                      dict[str, Any]]:
    """The log, vCPU 0's ACCEPT, the host's first BLOCK and vCPU 1's first ACCEPT."""
    log = log_of("accept_vs_block.toml", policy)
    accepts = calls(log, ACCEPT)
    held = next(r for r in accepts if r["actor"] == "vcpu0")
    block = calls(log, BLOCK)[0]
    other = next(r for r in accepts if r["actor"] == "vcpu1")
    return log, held, block, other


@pytest.mark.parametrize("policy", ["upstream", "bounded"])
def test_a_host_block_on_a_guest_held_entry_sets_host_priority(policy: str) -> None:
    """The host's BLOCK, issued while vCPU 0's ACCEPT holds the entry, gets plain BUSY on
    SEPT_ENTRY (and sets the entry's host-priority bit); vCPU 1's ACCEPT of the same page
    right after gets BUSY_HOST_PRIORITY, the guest backing off for the host."""
    _, held, block, other = accept_race(policy)
    assert held["outcome"] == "success"
    assert held["t_ns"] < block["t_ns"] < held["t_ns"] + held["dur_ns"]
    assert (block["status"], block["operand"]) == ("0x8000020000000001", "SEPT_ENTRY")
    assert block["t_ns"] < other["t_ns"] < held["t_ns"] + held["dur_ns"]
    assert (other["status"], other["operand"]) == ("0x8000020400000001", "SEPT_ENTRY")


def test_upstream_host_wins_its_retry_and_the_page_comes_back() -> None:
    """upstream: the kick waits for the ACCEPT to end, the one retry of BLOCK wins; TRACK,
    REMOVE, and vCPU 1 faults the page in (AUG) and ACCEPTs it itself."""
    log, held, block, _ = accept_race("upstream")
    assert block["outcome"] == "busy"
    retry = calls(log, BLOCK)[1]
    assert (retry["attempt"], retry["outcome"]) == (2, "success")
    assert retry["t_ns"] >= held["t_ns"] + held["dur_ns"]
    assert [r["outcome"] for r in calls(log, REMOVE)] == ["success"]
    refault = [r for r in calls(log, AUG) if r["actor"] == "vcpu1"]
    assert [r["outcome"] for r in refault] == ["success"]
    assert [r["outcome"] for r in calls(log, ACCEPT) if r["actor"] == "vcpu1"][-1] == "success"
    assert not [r for r in log if r["kind"] == "kvm_bug"]


def test_bounded_gives_the_block_up_and_the_page_stays() -> None:
    """bounded's wrapper retries only BUSY|SEPT_TREE: the BLOCK is handed back, nothing is
    removed, and vCPU 1 finds the page accepted once vCPU 0's ACCEPT is done."""
    log, _, block, _ = accept_race("bounded")
    assert block["outcome"] == "giveup" and len(calls(log, BLOCK)) == 1
    assert calls(log, REMOVE) == []
    assert [r["actor"] for r in calls(log, AUG)] == ["vcpu0"]


def test_outcome_counts_a_run() -> None:
    """outcome() runs the file for its gallery time: its calls are the log's."""
    scenario = load(EXAMPLES / "accept_vs_block.toml")
    log = log_of("accept_vs_block.toml", "upstream")
    assert outcome(scenario, "upstream").calls == len(
        [r for r in log if r["kind"] in ("seamcall", "tdcall")])


def test_a_line_says_how_many_busy_were_injected() -> None:
    """BUSY injection's statuses are KVM's debug knob, not the module's: the line says so."""
    page = (ROOT / "docs" / "gallery.md").read_text()
    section = page.split("## busy-injection", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("- `")]
    assert len(lines) == 2 and all(re.search(r"; \d+ of them injected;", line) for line in lines)


def test_a_guest_accept_walk_holds_the_entry_an_aug_meets() -> None:
    """tdg_mem_page_accept takes the SEPT entry lock before it finds the GPA unmapped: the
    host AUG in that window gets BUSY on RCX. `bounded` hands it back (a give-up, vCPU 0
    re-enters); `upstream` runs the fault again locally and its second attempt wins."""
    for policy, expected in (("bounded", "giveup"), ("upstream", "busy")):
        log = log_of("accept_vs_aug.toml", policy)
        augs = [r for r in calls(log, "TDH.MEM.PAGE.AUG") if r["actor"] == "vcpu0"]
        busy = [r for r in augs if r["outcome"] != "success"]
        assert [(r["status"], r["operand"], r["outcome"]) for r in busy] == [
            ("0x8000020000000001", "SEPT_ENTRY", expected)], policy
        after = augs[augs.index(busy[0]) + 1:]
        if policy == "upstream":
            assert after[0]["attempt"] == 2 and after[0]["outcome"] == "success"
            between = [r for r in log if busy[0]["seq"] < r["seq"] < after[0]["seq"]
                       and r["actor"] == "vcpu0" and r.get("leaf") == "TDH.VP.ENTER"]
            assert between == [], "the retry is local: no entry between"
        else:
            assert not after, "vcpu1's own fault maps the page: vcpu0 finds it mapped"
