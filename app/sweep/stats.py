"""Statistics of a sweep: per-point summaries with Wilson intervals, and the retry budget."""

from __future__ import annotations

import math
import statistics
from typing import Any

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval
THRESHOLD = 1e-3  # the give-up rate a retry budget must stay under (upper bound)
SUMMARY_COLUMNS = ("seeds", "calls", "giveups", "giveup_rate", "giveup_rate_lo",
                   "giveup_rate_hi", "busy_rate", "attempts_p99", "zero_step_activations")
# Beyond the contract: totals and the per-seed spread of the give-up rate.
EXTRA_COLUMNS = ("attempts", "busy", "kvm_bugs", "seed_rate_min", "seed_rate_max",
                 "seed_rate_sd")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (Wilson 1927).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 of n:
    with no give-ups in n calls the upper bound is z^2 / (n + z^2), about 3.84 / n.
    No calls at all say nothing: [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def percentile_attempts(hist: dict[str, int], q: float = 0.99) -> int:
    """The smallest attempt count k with at least q of the calls done in k attempts or fewer."""
    counts = sorted((int(k), v) for k, v in hist.items())
    total = sum(v for _, v in counts)
    if total == 0:
        return 0
    seen = 0
    for attempts, n in counts:
        seen += n
        if seen >= q * total:
            return attempts
    return counts[-1][0]


def summarize(point: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary.csv row from a point's rows (one per seed)."""
    calls = sum(r["calls"] for r in rows)
    giveups = sum(r["giveups"] for r in rows)
    attempts = sum(r["attempts"] for r in rows)
    busy = sum(r["busy"] for r in rows)
    hist: dict[str, int] = {}
    for r in rows:
        for k, v in r["attempts_per_call"].items():
            hist[k] = hist.get(k, 0) + v
    lo, hi = wilson(giveups, calls)
    per_seed = [r["giveups"] / r["calls"] for r in rows if r["calls"]]
    return {
        **point, "seeds": len(rows), "calls": calls, "giveups": giveups,
        "giveup_rate": giveups / calls if calls else math.nan,
        "giveup_rate_lo": lo, "giveup_rate_hi": hi,
        "busy_rate": busy / attempts if attempts else math.nan,
        "attempts_p99": percentile_attempts(hist),
        "zero_step_activations": sum(r["zero_step_activations"] for r in rows),
        "attempts": attempts, "busy": busy, "kvm_bugs": sum(r["kvm_bugs"] for r in rows),
        "seed_rate_min": min(per_seed) if per_seed else math.nan,
        "seed_rate_max": max(per_seed) if per_seed else math.nan,
        "seed_rate_sd": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
    }


def answer(rows: list[dict[str, Any]], threshold: float = THRESHOLD) -> int | None:
    """The smallest retry_max whose give-up rate's upper bound is below `threshold`."""
    good = [r["retry_max"] for r in rows if r["giveup_rate_hi"] < threshold]
    return min(good) if good else None


def group(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows by the values of `keys`, in first-seen order."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), []).append(row)
    return out


def answers(summary: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
    """For every combination of the axes other than retry_max: its retry budget."""
    others = [a for a in axes if a != "retry_max"]
    return [{**dict(zip(others, key, strict=True)), "answer": answer(rows)}
            for key, rows in group(summary, others).items()]
