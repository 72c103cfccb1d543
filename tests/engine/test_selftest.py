"""The zero-step selftest example (examples/zero_step_selftest.toml), checked against
what the TDX module source says happens (MODEL.md section 4), under every policy."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.config import POLICIES
from engine.run import run
from engine.scenario import Scenario, load, parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zero_step_selftest.toml"
END_NS = 1_000_000


def selftest(ignore: int = 5) -> Scenario:
    text = EXAMPLE.read_text(encoding="utf-8")
    old = "memory_fault = { ignore = 5 }"
    assert old in text
    return parse(text.replace(old, f"memory_fault = {{ ignore = {ignore} }}"), EXAMPLE.name)


def log_of(scenario: Scenario, **overrides: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    run(scenario.config(**overrides), scenario, END_NS, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def timeline(log: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(VP.ENTER number, what) for every VP.ENTER, memory-fault, and zero-step record:
    the number is that of the last TDH.VP.ENTER at or before the record."""
    out = []
    enters = 0
    for rec in log:
        if rec["leaf"] == "TDH.VP.ENTER" and rec["kind"] == "seamcall":
            enters += 1
            out.append((enters, "enter"))
        elif rec["kind"] == "zero_step":
            out.append((enters + 1, "zero_step"))  # written just before its VP.ENTER
        elif rec["kind"] in ("memory_fault", "zero_step_armed", "zero_step_disarmed"):
            out.append((enters, rec.get("action", rec["kind"])))
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_five_ignored_memory_faults_arm_on_the_7th_exit(policy: str) -> None:
    """Exits 1..5 are ignored memory faults, the 6th converts the range, the 7th counted
    EPT exit logs the GPA (armed), the 8th TDH.VP.ENTER is the first to take the SEPT tree
    exclusively, and every later VP.ENTER (after IO and HLT exits) still does."""
    log = log_of(selftest(), policy=policy)
    events = timeline(log)
    faults = [(n, what) for n, what in events if what in ("ignore", "convert")]
    assert faults == [(1, "ignore"), (2, "ignore"), (3, "ignore"), (4, "ignore"),
                      (5, "ignore"), (6, "convert")]
    armed = [rec for rec in log if rec["kind"] == "zero_step_armed"]
    assert [(n, w) for n, w in events if w == "zero_step_armed"] == [(7, "zero_step_armed")]
    assert armed[0]["count"] == 6
    assert armed[0]["rip"] == "0x401000" and armed[0]["gpa"] == "0x100000"
    enters = [n for n, what in events if what == "enter"]
    zero_steps = [n for n, what in events if what == "zero_step"]
    assert zero_steps[0] == 8
    assert zero_steps == [n for n in enters if n >= 8], "every VP.ENTER from the 8th on"
    assert not any(rec["kind"] == "zero_step_disarmed" for rec in log)
    # The guest made progress after arming: the ACCEPT, then IO and HLT exits.
    accept = next(r for r in log if r["leaf"] == "TDG.MEM.PAGE.ACCEPT")
    assert accept["outcome"] == "success"
    later_exits = [r["status"] for r in log if r["leaf"] == "TDH.VP.ENTER"
                   and r["t_ns"] > accept["t_ns"]]
    assert "0x000000000000001E" in later_exits and "0x000000000000000C" in later_exits
    assert len(zero_steps) >= 5


@pytest.mark.parametrize("policy", POLICIES)
def test_four_ignored_memory_faults_never_arm(policy: str) -> None:
    """With 4 ignored exits the 5th converts, the 6th exit is the last counted one at the
    RIP (the counter reaches 6): no GPA is logged, no VP.ENTER takes the tree exclusively."""
    log = log_of(selftest(ignore=4), policy=policy)
    kinds = {rec["kind"] for rec in log}
    assert "zero_step_armed" not in kinds and "zero_step" not in kinds
    actions = [rec["action"] for rec in log if rec["kind"] == "memory_fault"]
    assert actions == ["ignore"] * 4 + ["convert"]
    assert any(r["leaf"] == "TDG.MEM.PAGE.ACCEPT" and r["outcome"] == "success" for r in log)


def test_zero_step_off_never_fires() -> None:
    """The dashboard's what-if: with the detection off nothing arms and nothing fires."""
    log = log_of(selftest(), zero_step=False)
    assert not any(rec["kind"].startswith("zero_step") for rec in log)


def test_same_file_and_seed_give_the_same_log() -> None:
    scenario = load(EXAMPLE)
    first = io.StringIO()
    second = io.StringIO()
    run(scenario.config(), scenario, END_NS, first)
    run(load(EXAMPLE).config(), load(EXAMPLE), END_NS, second)
    assert first.getvalue() == second.getvalue()


def test_the_cli_runs_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["run", "--scenario-file", str(EXAMPLE), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["scenario"] == "zero-step-selftest"
    assert summary["config"]["vcpus"] == 1
    assert summary["zero_step_activations"] >= 5
    assert summary["zero_step_armed_vcpus"] == 1
