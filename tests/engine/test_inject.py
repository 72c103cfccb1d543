"""BUSY injection (engine.inject, examples/busy_injection.toml): what the debug config that
failed every 47th SEPT SEAMCALL showed on the kvm list. Under `upstream` the injected BUSY
is absorbed (the fault path's local retry, the zap path's kick and one retry) with no KVM
bug; under `bounded` the wrapper hands it back without a retry of its own, so it shows as
give-ups and re-entries of the guest."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.export import chunks, encode
from engine.run import records, run
from engine.scenario import Scenario, load, parse
from tests.engine.support import calls_by_actor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "busy_injection.toml"
END_NS = 3_000_000
SEPT_BUSY = "0x8000020000000092"
EPOCH_BUSY = "0x80000200000000A9"


def log_and_summary(scenario: Scenario, policy: str, end_ns: int = END_NS,
                    **overrides: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = io.StringIO()
    summary = run(scenario.config(policy=policy, **overrides), scenario, end_ns, out)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


@pytest.fixture(scope="module")
def example() -> Scenario:
    return load(EXAMPLE)


@pytest.fixture(scope="module")
def runs(example: Scenario) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    return {policy: log_and_summary(example, policy) for policy in example.policies}


def injected(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in log if r.get("injected")]


def test_the_example_names_its_source_and_policies(example: Scenario) -> None:
    assert example.policies == ("bounded", "upstream")
    assert "47" in example.source and example.workload.inject_busy_every == 47


@pytest.mark.parametrize("policy", ["bounded", "upstream"])
def test_injected_calls_are_sept_and_track_busy_never_block(
        runs: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]], policy: str) -> None:
    """Every injected record is a SEPT-wrapper leaf with BUSY|SEPT_TREE or TRACK with
    BUSY|TD_EPOCH; RANGE.BLOCK is never injected; the summary counts exactly these."""
    log, summary = runs[policy]
    found = injected(log)
    assert len(found) >= 10
    assert summary["injected_busy"] == len(found)
    leaves = {r["leaf"] for r in found}
    assert "TDH.MEM.RANGE.BLOCK" not in leaves
    assert {"TDH.MEM.PAGE.AUG", "TDH.MEM.PAGE.REMOVE"} <= leaves
    for r in found:
        expected = (EPOCH_BUSY, "TD_EPOCH") if r["leaf"] == "TDH.MEM.TRACK" else (
            SEPT_BUSY, "SEPT_TREE")
        assert (r["status"], r["operand"]) == expected, r
        assert r["outcome"] in ("busy", "giveup")


def test_upstream_absorbs_every_injection_without_a_kvm_bug(
        runs: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]) -> None:
    """Under upstream an injected fault-path BUSY is retried by the local loop (the next
    call of the vCPU is the same leaf, attempt + 1, with no TDH.VP.ENTER between), and an
    injected zap-path BUSY is followed by a kick and one retry that succeeds."""
    log, summary = runs["upstream"]
    assert summary["kvm_bugs"] == 0 and summary["leaked_pages"] == 0
    by_actor = calls_by_actor(log)
    for r in injected(log):
        calls = by_actor[r["actor"]]
        after = calls[calls.index(r) + 1]
        assert (after["leaf"], after["attempt"]) == (r["leaf"], r["attempt"] + 1), (r, after)
        assert r["outcome"] == "busy"
        if r["actor"].startswith("zap"):
            assert after["outcome"] == "success"
            kicks = [k for k in log if k["kind"] == "kick" and k["actor"] == r["actor"]
                     and r["t_ns"] <= k["t_ns"] <= after["t_ns"]]
            assert kicks, r


def test_bounded_gives_an_injected_sept_busy_back_without_a_retry(
        runs: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]) -> None:
    """Under bounded the SEPT wrapper never retries an injected BUSY|SEPT_TREE (though it
    retries a real one up to retry_max times): a fault-path one is a give-up and the vCPU
    re-enters the guest; a REMOVE one is a give-up and the page is leaked."""
    log, summary = runs["bounded"]
    by_actor = calls_by_actor(log)
    sept = [r for r in injected(log) if r["leaf"] != "TDH.MEM.TRACK"]
    assert sept and all(r["outcome"] == "giveup" for r in sept)
    for r in sept:
        calls = by_actor[r["actor"]]
        later = calls[calls.index(r) + 1:]
        if r["actor"].startswith("vcpu") and later:
            assert later[0]["leaf"] == "TDH.VP.ENTER", (r, later[0])
    removes = [r for r in sept if r["leaf"] == "TDH.MEM.PAGE.REMOVE"]
    assert summary["leaked_pages"] >= len(removes) > 0
    tracks = [r for r in injected(log) if r["leaf"] == "TDH.MEM.TRACK"]
    assert all(r["outcome"] == "busy" for r in tracks)  # v19's TRACK loop goes round


def test_every_nth_call_and_not_the_wrappers_retries() -> None:
    """One vCPU faulting in 8 pages under bounded: calls SEPT.ADD, AUG x 8 (9 calls);
    with N = 3 the 3rd, 6th and 9th calls are injected (each re-run then counts as a new
    call), and nothing is injected with the knob off."""
    body = ('\n[[vcpu]]\nindex = 0\nscript = [{step = "loop", rip = 1, '
            'gpa_start = "0x200000", pages = 8}]\n')
    head = ('name = "t"\ndescription = "t"\n[td]\nvcpus = 1\npolicy = "bounded"\n'
            '[workload]\ntd_memory_mib = 16\ninject_busy_every = {n}\n')
    log, _ = log_and_summary(parse(head.format(n=3) + body), "bounded", 400_000)
    calls = [r for r in log if r["kind"] == "seamcall" and r["leaf"] != "TDH.VP.ENTER"]
    flags = [bool(r.get("injected")) for r in calls]
    assert flags[:9] == [False, False, True] * 3
    off, _ = log_and_summary(parse(head.format(n=0) + body), "bounded", 400_000)
    assert not injected(off)
    assert [r["leaf"] for r in off if r["kind"] == "seamcall"].count("TDH.MEM.PAGE.AUG") == 8


def test_the_knob_off_changes_nothing(example: Scenario) -> None:
    """inject_busy_every = 0 gives exactly the log of the same file without the key."""
    text = EXAMPLE.read_text(encoding="utf-8")
    off = parse(text.replace("inject_busy_every = 47", "inject_busy_every = 0"))
    without = parse(text.replace("inject_busy_every = 47\n", ""))
    a, _ = log_and_summary(off, "upstream", 1_000_000)
    b, _ = log_and_summary(without, "upstream", 1_000_000)
    assert a == b and not injected(a)


def test_the_injected_key_reaches_every_export_format(example: Scenario) -> None:
    """CSV's extra column, the Chrome trace's args and the Perfetto trace carry it."""
    config = example.config(policy="upstream")

    def text(fmt: str) -> str:
        return "".join(chunks(fmt, records(config, example, 1_500_000), config.to_dict()))

    rows = list(csv.DictReader(io.StringIO(text("csv"))))
    assert any(json.loads(r["extra"] or "{}").get("injected") for r in rows)
    events = json.loads(text("chrome"))["traceEvents"]
    assert any(e.get("ph") == "X" and e["args"].get("injected") for e in events)
    trace = b"".join(encode("perfetto", records(config, example, 1_500_000), config.to_dict()))
    assert b"injected" in trace


def test_a_negative_knob_is_refused_naming_it() -> None:
    from engine.errors import ScenarioError
    with pytest.raises(ScenarioError, match="workload.inject_busy_every"):
        parse('name = "t"\ndescription = "t"\n[workload]\ninject_busy_every = -1\n')
