"""The run summary (engine.summary, engine.run.run): the contract's keys and exact counts."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.config import Config
from engine.module import SEPT_WRAPPED
from engine.records import CONTROL
from engine.scenario import builtin_scenario
from engine.sim import replay
from engine.status import OPERANDS
from engine.summary import Tally, summary
from tests.engine.support import logical_calls, parse_jsonl, recount, run_log

CONTRACT_KEYS = {"config", "sim_ns", "events", "attempts", "busy", "retries", "giveups",
                 "zero_step_activations", "busy_by_operand", "by_leaf"}


def test_summary_has_the_contract_keys_and_types() -> None:
    """The summary holds every contract key with the contract's types and the run's config."""
    config = Config(scenario="conversion", seed=4)
    result, _ = run_log(config, 2_000_000)
    assert CONTRACT_KEYS <= set(result)
    assert result["config"] == config.to_dict()
    assert result["sim_ns"] == 2_000_000
    for key in CONTRACT_KEYS - {"config", "busy_by_operand", "by_leaf"}:
        assert type(result[key]) is int, key
    assert list(result["busy_by_operand"]) == list(OPERANDS)
    for counts in result["by_leaf"].values():
        assert set(counts) == {"attempts", "busy", "retries", "giveups"}


@pytest.mark.parametrize("config", [
    Config(), Config(scenario="conversion", policy="upstream", seed=2),
    Config(scenario="boot", module_version="1.0", vcpus=16, policy="none"),
], ids=["default", "conversion-upstream", "boot-10-none"])
def test_summary_counts_match_the_log(config: Config) -> None:
    """events, attempts, busy, retries, giveups, zero-step activations, per operand and per
    leaf: exactly the counts in the written log."""
    result, text = run_log(config, 3_000_000)
    counts = recount(parse_jsonl(text))
    for key in ("events", "attempts", "busy", "retries", "giveups", "zero_step_activations",
                "by_leaf"):
        assert result[key] == counts[key], key
    assert {k: v for k, v in result["busy_by_operand"].items() if v} == counts["busy_by_operand"]
    assert result["attempts"] == sum(c["attempts"] for c in result["by_leaf"].values())
    assert result["busy"] == sum(result["busy_by_operand"].values())


def test_attempts_per_call_is_the_logical_call_histogram() -> None:
    """attempts_per_call counts finished logical calls by their number of attempts."""
    result, text = run_log(Config(retry_max=4), 3_000_000)
    calls = [c for c in logical_calls(parse_jsonl(text)) if c[-1]["outcome"] != "busy"]
    expected = Counter(len(c) for c in calls)
    assert result["attempts_per_call"] == {str(k): v for k, v in sorted(expected.items())}
    # The SEPT wrapper's calls end at retry_max + 1 = 5 attempts; a BUSY TDH.VP.ENTER is
    # re-entered with no cap (v19's EXIT_FASTPATH_REENTER_GUEST), each re-entry a call of
    # its own: never a retry, never a give-up.
    assert max(len(c) for c in calls if c[0]["leaf"] in SEPT_WRAPPED) == 5
    log = parse_jsonl(text)
    enters = [r for r in log if r["kind"] == "seamcall" and r["leaf"] == "TDH.VP.ENTER"]
    assert any(r["outcome"] == "busy" for r in enters)
    assert {r["attempt"] for r in enters} == {1}
    assert not [r for r in enters if r["outcome"] == "giveup"]


def test_control_records_are_events_not_attempts() -> None:
    """A control record counts as an event but not as an attempt, BUSY or retry."""
    recs = list(replay(Config(), [(100_000, {"retry_max": 1})], 400_000,
                       builtin_scenario("zero-step")))
    with_control = Tally()
    with_control.add(recs)
    without = Tally()
    without.add([r for r in recs if r[2] != CONTROL])
    a = summary({}, 400_000, with_control)
    b = summary({}, 400_000, without)
    assert a["events"] == b["events"] + 1
    assert {k: v for k, v in a.items() if k != "events"} == {
        k: v for k, v in b.items() if k != "events"}


def test_tally_added_in_pieces_equals_tally_at_once() -> None:
    """Counting the records in slices (as the live runner does) gives the same counts."""
    recs = list(replay(Config(scenario="conversion"), [], 1_500_000,
                       builtin_scenario("conversion")))
    whole, pieces = Tally(), Tally()
    whole.add(recs)
    for i in range(0, len(recs), 97):
        pieces.add(recs[i:i + 97])
    assert whole.counts() == pieces.counts()
