"""A minimal SimPy model of one try-lock, the yardstick for the engine's live path.

N vCPU processes each loop: guest time (exponential, 30 us mean), then a SEAMCALL that
try-locks one lock (held 3.5 us on success; a BUSY costs 1 us and is retried 100 ns
later), then the next guest run. Every attempt is counted, as the engine's live path
counts every record. Prints simulated attempts per wall-clock second; with
--engine-path DIR, also the engine at DIR (a checkout or a compiled build) on `boot`
with the same vCPUs, the two taking turns round by round in this one run.

    python bench/simpy_trylock.py [--vcpus 8] [--duration-us 300000] [--rounds 3]
                                  [--engine-path /tmp/compiled]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Generator
from typing import Any

GUEST_MEAN_NS = 30_000
HOLD_NS = 3_500
BUSY_NS = 1_000
RETRY_GAP_NS = 100


def simpy_attempts_per_s(vcpus: int, duration_us: int, seed: int = 1) -> float:
    import simpy

    env = simpy.Environment()
    rng = random.Random(seed)
    state = {"held": False, "attempts": 0}

    def vcpu() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(rng.expovariate(1.0 / GUEST_MEAN_NS))
            while True:
                state["attempts"] += 1
                if not state["held"]:
                    state["held"] = True
                    yield env.timeout(HOLD_NS)
                    state["held"] = False
                    break
                yield env.timeout(BUSY_NS + RETRY_GAP_NS)

    for _ in range(vcpus):
        env.process(vcpu())
    t0 = time.perf_counter()
    env.run(until=duration_us * 1000)
    return state["attempts"] / (time.perf_counter() - t0)


def engine_attempts_per_s(path: str, vcpus: int, duration_us: int) -> tuple[float, str]:
    """bench/engine.py's worker (boot, live path) in a fresh process importing `engine`
    from `path`."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine.py")
    out = subprocess.run([sys.executable, script, "--worker", "boot", str(vcpus),
                          str(duration_us), "0"], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.abspath(path)})
    row = json.loads(out.stdout)
    return float(row["attempts_per_s"]), str(row["engine"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vcpus", type=int, default=8)
    parser.add_argument("--duration-us", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of K rounds")
    parser.add_argument("--engine-path", action="append", default=[], metavar="DIR")
    args = parser.parse_args()
    best: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for _ in range(args.rounds):
        best["simpy"] = max(best.get("simpy", 0.0),
                            simpy_attempts_per_s(args.vcpus, args.duration_us))
        for path in args.engine_path:
            rate, kind = engine_attempts_per_s(path, args.vcpus, args.duration_us)
            best[path] = max(best.get(path, 0.0), rate)
            kinds[path] = kind
    print(f"SimPy, one try-lock, {args.vcpus} vCPUs: {best['simpy'] / 1e6:6.3f} M attempts/s")
    for path in args.engine_path:
        print(f"[{path} {kinds[path]}] boot, {args.vcpus} vCPUs, live: "
              f"{best[path] / 1e6:6.3f} M attempts/s ({best[path] / best['simpy']:.2f}x SimPy)")


if __name__ == "__main__":
    # This directory holds a file named engine.py: it must not shadow the engine package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    main()
