"""Scripted guests and host actors: each step kind and actor, in tiny inline scenario files."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.guest import ACCEPT, ACCESS, HLT, IO, STOP, Op
from engine.run import run
from engine.scenario import Scenario, load, parse
from engine.script import DEFAULT_RIP, ScriptGuest, Step

HEAD = """
name = "t"
description = "a test"
duration_us = 1000
[td]
vcpus = 1
[workload]
td_memory_mib = 16
"""


def scenario(body: str, head: str = HEAD) -> Scenario:
    return parse(head + body, "t.toml")


def log_of(sc: Scenario, end_us: int = 1000, **overrides: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    run(sc.config(**overrides), sc, end_us * 1000, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def ops(*steps: Step, ve: bool = True) -> list[Op]:
    guest = ScriptGuest(steps, ve)
    out = []
    while True:
        op = guest.next_op()
        out.append(op)
        if op.kind == STOP:
            return out


def calls(log: list[dict[str, Any]], leaf: str) -> list[dict[str, Any]]:
    return [r for r in log if r["leaf"] == leaf and r["kind"] in ("seamcall", "tdcall")]


# -- the guest's operations ------------------------------------------------------------------
def test_each_step_kind_becomes_its_operation() -> None:
    """run adds guest time to the next operation; rip moves the RIP for later steps."""
    got = ops(Step("access", rip=0x10, page=5, pages=2), Step("run", ns=700),
              Step("accept", page=9), Step("rip", rip=0x20), Step("io"),
              Step("hlt", rip=0x30, ns=4000), Step("access", page=7, private=False))
    assert got == [
        Op(0, ACCESS, 0x10, (5, 6), True), Op(700, ACCEPT, 0x10, (9,), True),
        Op(0, IO, 0x20, ()), Op(0, HLT, 0x30, (), True, 4000), Op(0, ACCESS, 0x30, (), True),
        Op(0, STOP, 0x30, ()),
    ]


def test_repeat_loop_and_the_end_of_a_script() -> None:
    """A loop is one access per page at one RIP; repeat repeats any step; after the last
    step the guest stops, and asking again still says stop."""
    got = ops(Step("loop", rip=0x40, page=3, pages=3), Step("io", repeat=2),
              Step("run", ns=5, repeat=3), ve=False)
    assert got == [Op(0, ACCESS, 0x40, (3,), False), Op(0, ACCESS, 0x40, (4,), False),
                   Op(0, ACCESS, 0x40, (5,), False), Op(0, IO, 0x40, ()), Op(0, IO, 0x40, ()),
                   Op(15, STOP, 0x40, ())]
    guest = ScriptGuest((), True)
    assert guest.next_op() == Op(0, STOP, DEFAULT_RIP, ())
    assert guest.next_op().kind == STOP


def test_a_million_repeats_are_made_lazily() -> None:
    guest = ScriptGuest((Step("io", repeat=1_000_000),), True)
    assert guest.next_op().kind == IO


# -- steps in a running TD -------------------------------------------------------------------
def test_a_loop_over_fresh_pages_at_one_rip_arms_the_filter() -> None:
    """Eight fresh pages at one RIP: eight counted exits, the 7th logs its GPA."""
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "loop", rip = "0x500000", gpa_start = "0x200000", pages = 8}]
"""))
    armed = [r for r in log if r["kind"] == "zero_step_armed"]
    assert len(armed) == 1 and armed[0]["gpa"] == hex(0x200000 + 6 * 4096)
    assert len(calls(log, "TDH.MEM.PAGE.AUG")) == 8
    assert len(calls(log, "TDG.MEM.PAGE.ACCEPT")) == 8


def test_a_shared_access_never_exits() -> None:
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "access", gpa = "0x200000", pages = 8, private = false}]
"""))
    assert [r["status"] for r in calls(log, "TDH.VP.ENTER")] == ["0x000000000000000C"]
    assert len(log) == 1


def test_accept_first_then_access_does_not_fault_again() -> None:
    """An explicit ACCEPT of an unmapped page exits (not counted), gets AUGed, and the
    ACCEPT then succeeds; the access afterwards runs without an exit."""
    log = log_of(scenario("""
[[vcpu]]
index = 0
ve_on_pending = false
script = [{step = "accept", gpa = 8192}, {step = "access", gpa = 8192}]
"""))
    assert [r["leaf"] for r in log if r["kind"] in ("seamcall", "tdcall")] == [
        "TDH.VP.ENTER", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG", "TDH.VP.ENTER",
        "TDG.MEM.PAGE.ACCEPT"]
    assert not any(r["kind"] == "zero_step_armed" for r in log)


def test_without_ve_an_access_to_a_pending_page_exits_and_is_counted() -> None:
    """#VE disabled for PENDING pages: the access exits again and again at one RIP (the
    guest never ACCEPTs), so the filter arms; with #VE the handler ACCEPTs at once."""
    body = """
[[vcpu]]
index = 0
ve_on_pending = {ve}
script = [{{step = "access", rip = "0x401000", gpa = "0x3000"}}]
"""
    no_ve = log_of(scenario(body.format(ve="false")), end_us=200)
    assert any(r["kind"] == "zero_step_armed" for r in no_ve)
    assert not calls(no_ve, "TDG.MEM.PAGE.ACCEPT")
    with_ve = log_of(scenario(body.format(ve="true")), end_us=200)
    assert not any(r["kind"] == "zero_step_armed" for r in with_ve)
    assert len(calls(with_ve, "TDG.MEM.PAGE.ACCEPT")) == 1


def test_hlt_holds_the_vcpu_out_of_the_guest() -> None:
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "hlt", rip = 1, hold_ns = 50000}, {step = "io", rip = 2}]
"""))
    enters = calls(log, "TDH.VP.ENTER")
    first_end = enters[0]["t_ns"] + enters[0]["dur_ns"]
    assert enters[1]["t_ns"] == first_end + 50_000


def test_vcpus_without_a_table_run_the_stochastic_workload() -> None:
    """indices names several vCPUs; the others are stochastic (many exits each)."""
    sc = scenario("""
[[vcpu]]
indices = [0, 2]
script = [{step = "io", rip = 1}]
""", HEAD.replace("vcpus = 1", "vcpus = 3"))
    log = log_of(sc, end_us=2000)
    per_actor = {a: len([r for r in calls(log, "TDH.VP.ENTER") if r["actor"] == a])
                 for a in ("vcpu0", "vcpu1", "vcpu2")}
    assert per_actor["vcpu0"] == per_actor["vcpu2"] == 2
    assert per_actor["vcpu1"] > 10


# -- host actors -------------------------------------------------------------------------------
TOUCH = """
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x10000", pages = 2}, {step = "run", ns = 900000},
          {step = "io", rip = 2}]
"""


def test_zap_at_given_times_removes_the_range() -> None:
    log = log_of(scenario(TOUCH + """
[[zap]]
gpa = "0x10000"
pages = 4
at_us = [100]
"""))
    zap = [(r["leaf"], r["t_ns"]) for r in log if r["actor"] == "zap0" and r["kind"] == "seamcall"]
    assert [leaf for leaf, _ in zap] == ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.RANGE.BLOCK",
                                         "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE",
                                         "TDH.MEM.PAGE.REMOVE"]
    assert zap[0][1] == 100_000
    assert any(r["kind"] == "kick" and r["actor"] == "zap0" for r in log)


def test_zap_at_a_rate_starts_at_start_us() -> None:
    log = log_of(scenario(TOUCH + """
[[zap]]
gpa = "0x10000"
pages = 2
every_us = 100
start_us = 50
batch_pages = 1
"""))
    blocks = [r["t_ns"] for r in log if r["leaf"] == "TDH.MEM.RANGE.BLOCK"]
    assert blocks[:2] == [50_000, 150_000]


def test_invalidation_window_makes_faults_retry_by_reentry() -> None:
    """While the window lasts the fault is retried by re-entering the guest: the same RIP
    faults again and again (feeding the zero-step counter); the AUG comes after it ends."""
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x10000"}]

[[invalidate]]
gpa = "0x10000"
at_us = 0
duration_us = 100
"""))
    window = [(r["action"], r["t_ns"]) for r in log if r["kind"] == "invalidate"]
    assert window == [("start", 0), ("end", 100_000)]
    aug = calls(log, "TDH.MEM.SEPT.ADD")[0]
    assert aug["t_ns"] >= 100_000
    assert any(r["kind"] == "zero_step_armed" for r in log)


def test_signal_is_sent_periodically_and_kicks_the_vcpu() -> None:
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "run", ns = 500000}, {step = "io", rip = 2}]

[[signal]]
vcpu = 0
every_us = 100
start_us = 10
count = 3
"""))
    assert [r["t_ns"] for r in log if r["kind"] == "signal"] == [10_000, 110_000, 210_000]
    kicked = [r for r in calls(log, "TDH.VP.ENTER") if r["status"] == "0x0000000000000001"]
    assert len(kicked) == 3


def test_memslot_deletion_zaps_and_faults_wait_for_recreation() -> None:
    log = log_of(scenario("""
[[vcpu]]
index = 0
script = [{step = "access", rip = 1, gpa = "0x10000"}, {step = "run", ns = 200000},
          {step = "access", rip = 2, gpa = "0x10000"}]

[[memslot]]
gpa = "0x10000"
pages = 16
delete_at_us = 100
recreate_after_us = 300
"""))
    slot = [(r["action"], r["t_ns"]) for r in log if r["kind"] == "memslot"]
    assert slot == [("delete", 100_000), ("recreate", 400_000)]
    assert [r["leaf"] for r in log if r["actor"] == "zap0" and r["kind"] == "seamcall"] == [
        "TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE"]
    augs = [r["t_ns"] for r in calls(log, "TDH.MEM.PAGE.AUG")]
    assert len(augs) == 2 and augs[1] >= 400_000


def test_shared_range_and_memory_fault_ignore() -> None:
    """Userspace ignores 2 memory-fault exits, then converts the whole shared range."""
    log = log_of(scenario("""
[[shared]]
gpa = "0x10000"
pages = 2

[[vcpu]]
index = 0
memory_fault = {ignore = 2}
script = [{step = "access", rip = 1, gpa = "0x10000"}, {step = "access", rip = 2, gpa = "0x11000"}]
"""))
    assert [r["action"] for r in log if r["kind"] == "memory_fault"] == [
        "ignore", "ignore", "convert"]
    assert len(calls(log, "TDH.MEM.PAGE.AUG")) == 2


# -- the examples ----------------------------------------------------------------------------
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_and_deterministic(path: Path) -> None:
    """Same file, same seed: the same log, byte for byte (each run parses the file anew)."""
    texts = []
    for _ in range(2):
        sc = load(path)
        out = io.StringIO()
        run(sc.config(), sc, sc.duration_us * 1000, out)
        texts.append(out.getvalue())
    assert texts[0] == texts[1] and texts[0]


def test_invalidation_retry_example_shows_the_feedback_loop() -> None:
    """vCPU 0 arms during the window; its exclusive SEPT tree entries make the other vCPUs'
    AUGs meet BUSY|SEPT_TREE. With zero-step off there is no BUSY at all."""
    sc = load(Path(__file__).resolve().parents[2] / "examples" / "invalidation_retry.toml")
    on = log_of(sc, end_us=sc.duration_us)
    armed = [r for r in on if r["kind"] == "zero_step_armed"]
    assert [r["actor"] for r in armed] == ["vcpu0"] and armed[0]["t_ns"] < 60_000
    assert any(r["leaf"] == "TDH.MEM.PAGE.AUG" and r["operand"] == "SEPT_TREE"
               and r["actor"] != "vcpu0" for r in on)
    off = log_of(sc, end_us=sc.duration_us, zero_step=False)
    assert not any(r["outcome"] in ("busy", "giveup") for r in off)


def test_a_run_with_fewer_vcpus_leaves_their_tables_out() -> None:
    """The live server picks vCPU counts itself: tables for vCPUs the run lacks are left
    out rather than failing the run (the CLI refuses such a run, see Scenario.config)."""
    from engine.config import Config
    from engine.sim import Simulation

    sc = scenario("""
[[vcpu]]
index = 3
script = [{step = "io"}]

[[signal]]
vcpu = 3
every_us = 10
""", HEAD.replace("vcpus = 1", "vcpus = 4"))
    sim = Simulation(Config(scenario="t", vcpus=2), sc)
    assert len(sim.vcpus) == 2 and sim.host_actors == []
    assert sim.run_until(100_000)


def test_an_invalid_td_vcpus_does_not_confuse_the_index_checks() -> None:
    from engine.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        scenario("[[vcpu]]\nindex = 0\n", HEAD.replace("vcpus = 1", "vcpus = 0"))
    assert info.value.messages == ["t.toml: td.vcpus: must be an integer from 1 to 512"]
