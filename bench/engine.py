"""Engine speed and memory: prints simulated attempts per wall-clock second.

Live path: every record produced and counted (engine.summary.Tally), none written.
Export path: the same with the JSONL log written to a file.
Memory: peak RSS of a run and of a run 10x longer, each in a fresh process.

    python3 bench/engine.py [--duration-us N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CASES = (("boot", 8), ("boot", 64), ("zero-step", 8))


def _measure(scenario: str, vcpus: int, duration_us: int, export: bool) -> dict[str, float]:
    from engine.config import Config
    from engine.run import run

    config = Config(scenario=scenario, vcpus=vcpus)
    t0 = time.perf_counter()
    if export:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as out:
            result = run(config, None, duration_us * 1000, out, "jsonl")
    else:
        result = run(config, None, duration_us * 1000)
    wall = time.perf_counter() - t0
    return {"attempts": result["attempts"], "events": result["events"], "wall_s": wall,
            "attempts_per_s": result["attempts"] / wall, "records_per_s": result["events"] / wall}


def _peak_rss_kib(scenario: str, vcpus: int, duration_us: int) -> int:
    code = ("import resource,sys; from engine.config import Config; from engine.run import run; "
            f"run(Config(scenario={scenario!r}, vcpus={vcpus}), None, {duration_us * 1000}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-us", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for scenario, vcpus in CASES:
        for export in (False, True):
            best = max((_measure(scenario, vcpus, args.duration_us, export)
                        for _ in range(args.repeat)), key=lambda r: r["attempts_per_s"])
            row = {"scenario": scenario, "vcpus": vcpus, "path": "export" if export else "live",
                   **best}
            rows.append(row)
            if not args.json:
                print(f"{scenario:10} {vcpus:3} vCPUs {row['path']:6}: "
                      f"{best['attempts_per_s'] / 1e6:6.3f} M attempts/s, "
                      f"{best['records_per_s'] / 1e6:6.3f} M records/s "
                      f"({best['events']} records in {best['wall_s']:.2f} s)", flush=True)
    if args.memory:
        for scenario, vcpus in CASES:
            short = _peak_rss_kib(scenario, vcpus, args.duration_us)
            long = _peak_rss_kib(scenario, vcpus, args.duration_us * 10)
            row = {"scenario": scenario, "vcpus": vcpus, "peak_rss_kib_1x": short,
                   "peak_rss_kib_10x": long, "growth": long / short - 1}
            rows.append(row)
            if not args.json:
                print(f"{scenario:10} {vcpus:3} vCPUs memory: peak {short} KiB for "
                      f"{args.duration_us} us, {long} KiB for 10x ({100 * row['growth']:+.1f}%)",
                      flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
