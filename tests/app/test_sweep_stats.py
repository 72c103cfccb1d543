"""Sweep statistics: the Wilson interval against published values, p99, the answer."""

from __future__ import annotations

import math

import pytest

from app.sweep.answer import Answers
from app.sweep.stats import answers, percentile_attempts, summarize, wilson


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    # Newcombe, "Two-sided confidence intervals for the single proportion: comparison of
    # seven methods", Statistics in Medicine 17 (1998) 857-872, Table I, method 3 (Wilson).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_table(k: int, n: int, lo: float, hi: float) -> None:
    """The 95% Wilson interval equals the textbook's to its four printed decimals."""
    got_lo, got_hi = wilson(k, n)
    assert round(got_lo, 4) == lo
    assert round(got_hi, 4) == hi


def test_wilson_edges() -> None:
    """0 of n gives [0, z^2/(n+z^2)] (the 'rule of three' neighbour); n of n reaches 1;
    no calls at all say nothing."""
    lo, hi = wilson(0, 10_000)
    assert lo == 0.0 and hi == pytest.approx(1.959963984540054 ** 2 / (10_000 + 3.8414588))
    assert wilson(5, 5)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_p99_of_a_histogram() -> None:
    """The 99th percentile of attempts per call: the smallest k covering 99% of calls."""
    assert percentile_attempts({"1": 98, "2": 1, "17": 1}) == 2
    assert percentile_attempts({"1": 97, "2": 1, "17": 2}) == 17
    assert percentile_attempts({}) == 0


def _row(seed: int, calls: int, giveups: int) -> dict[str, object]:
    return {"seed": seed, "calls": calls, "giveups": giveups, "attempts": calls * 2,
            "busy": giveups * 3, "zero_step_activations": 1, "kvm_bugs": 0,
            "attempts_per_call": {"1": calls - giveups, "3": giveups}}


def test_summary_pools_all_seeds_calls() -> None:
    """The rate and interval are over every seed's calls together; the spread per seed."""
    s = summarize({"retry_max": 4}, [_row(1, 1000, 10), _row(2, 3000, 10)])
    assert s["calls"] == 4000 and s["giveups"] == 20 and s["giveup_rate"] == 20 / 4000
    assert (s["giveup_rate_lo"], s["giveup_rate_hi"]) == wilson(20, 4000)
    assert s["busy_rate"] == 60 / 8000
    assert s["seed_rate_min"] == 10 / 3000 and s["seed_rate_max"] == 10 / 1000
    assert s["seeds"] == 2 and s["attempts_p99"] == 1  # 0.5% of calls took 3 attempts
    empty = summarize({"retry_max": 0}, [_row(1, 0, 0)])
    assert math.isnan(empty["giveup_rate"]) and empty["giveup_rate_hi"] == 1.0


def test_answer_is_the_smallest_budget_under_the_bound() -> None:
    """Per TD size: the smallest retry_max whose upper bound is below 1e-3, or none."""
    summary = [summarize({"vcpus": v, "retry_max": r}, [_row(1, 100_000, g)])
               for v, r, g in [(8, 0, 500), (8, 4, 90), (8, 16, 2), (128, 0, 9000),
                               (128, 16, 800)]]
    assert answers(summary, ["vcpus", "retry_max"]) == [{"vcpus": 8, "answer": 16},
                                                        {"vcpus": 128, "answer": None}]
    table = Answers({"vcpus": [8, 128], "retry_max": [0, 4, 16]}, summary, {}).main()
    assert table == [{"vcpus": 8, "answer": "16"}, {"vcpus": 128, "answer": "none in the sweep"}]
