"""Engine speed and memory: prints simulated attempts per wall-clock second.

Live path: every record produced and counted (engine.summary.Tally), none written.
Export path: the same with the JSONL log written to a file.
Memory: peak RSS of a run and of a run 10x longer, each in a fresh process.

    python3 bench/engine.py [--duration-us N] [--repeat K] [--memory]
    python3 bench/engine.py --engine-path /tmp/perfref --engine-path . --repeat 5

With one or more --engine-path, each measurement runs in a fresh process that imports
`engine` from that directory (a checkout, or a `pip install -t DIR` of a compiled build),
and the engines take turns case by case, so a busy machine slows them alike.
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
            # .file: the wrapper is no io.TextIOBase, and run() would take it for binary
            result = run(config, None, duration_us * 1000, out.file, "jsonl")
    else:
        result = run(config, None, duration_us * 1000)
    wall = time.perf_counter() - t0
    return {"attempts": result["attempts"], "events": result["events"], "wall_s": wall,
            "attempts_per_s": result["attempts"] / wall, "records_per_s": result["events"] / wall}


def _engine_kind() -> str:
    """"compiled" when the hot modules are extension modules (a mypyc build), else "pure"."""
    import engine.vcpu

    return "pure" if engine.vcpu.__file__.endswith(".py") else "compiled"


def _measure_in(path: str, scenario: str, vcpus: int, duration_us: int,
                export: bool) -> dict[str, float]:
    """_measure in a fresh process importing `engine` from `path`."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", scenario, str(vcpus),
         str(duration_us), str(int(export))],
        check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.path.abspath(path)})
    return json.loads(out.stdout)


def _peak_rss_kib(path: str, scenario: str, vcpus: int, duration_us: int) -> int:
    code = ("import resource,sys; from engine.config import Config; from engine.run import run; "
            f"run(Config(scenario={scenario!r}, vcpus={vcpus}), None, {duration_us * 1000}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.abspath(path)})
    return int(out.stdout.strip())


def _worker(argv: list[str]) -> None:
    scenario, vcpus, duration_us, export = argv
    _measure(scenario, int(vcpus), 1_000, export == "1")  # warm up: imports, parsing, caches
    row = _measure(scenario, int(vcpus), int(duration_us), export == "1")
    print(json.dumps({**row, "engine": _engine_kind()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-us", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--engine-path", action="append", default=[], metavar="DIR",
                        help="measure the engine importable from DIR (repeatable; "
                             "default: the current directory, in this process)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = args.engine_path or [None]
    rows = []
    for scenario, vcpus in CASES:
        for export in (False, True):
            runs: dict[str | None, list[dict[str, float]]] = {p: [] for p in paths}
            for _ in range(args.repeat):
                for path in paths:
                    runs[path].append(
                        _measure(scenario, vcpus, args.duration_us, export) if path is None
                        else _measure_in(path, scenario, vcpus, args.duration_us, export))
            for path in paths:
                best = max(runs[path], key=lambda r: r["attempts_per_s"])
                row = {"scenario": scenario, "vcpus": vcpus,
                       "path": "export" if export else "live", **best}
                if path is not None:
                    row["engine_path"] = path
                rows.append(row)
                if not args.json:
                    label = "" if path is None else f"[{path} {best['engine']}] "
                    print(f"{label}{scenario:10} {vcpus:3} vCPUs {row['path']:6}: "
                          f"{best['attempts_per_s'] / 1e6:6.3f} M attempts/s, "
                          f"{best['records_per_s'] / 1e6:6.3f} M records/s "
                          f"({best['events']} records in {best['wall_s']:.2f} s)", flush=True)
    if args.memory:
        for path in paths:
            where = path or os.getcwd()
            for scenario, vcpus in CASES:
                short = _peak_rss_kib(where, scenario, vcpus, args.duration_us)
                long = _peak_rss_kib(where, scenario, vcpus, args.duration_us * 10)
                row = {"scenario": scenario, "vcpus": vcpus, "peak_rss_kib_1x": short,
                       "peak_rss_kib_10x": long, "growth": long / short - 1}
                if path is not None:
                    row["engine_path"] = path
                rows.append(row)
                if not args.json:
                    label = "" if path is None else f"[{path}] "
                    print(f"{label}{scenario:10} {vcpus:3} vCPUs memory: peak {short} KiB for "
                          f"{args.duration_us} us, {long} KiB for 10x "
                          f"({100 * row['growth']:+.1f}%)", flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    # This file is named engine.py: its directory must not shadow the engine package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
    else:
        sys.path.insert(0, os.getcwd())
        main()
