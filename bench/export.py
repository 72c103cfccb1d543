"""Trace sizes (bytes per record) and write speed of the export formats, side by side.

    python3 bench/export.py [--repeat 3] [--formats chrome,chrome-lean,perfetto,jsonl]

zero-step with 8 vCPUs for 100 ms and 64 vCPUs for 10 ms: each run's records are made
once, then every format writes them, in turn, `--repeat` times (the best time is kept);
write speed is of the writer alone, without the simulation. `chrome-lean` is the Chrome
trace without BUSY instants, as written for runs over BUSY_INSTANTS_MAX_RECORDS records.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CASES = ((8, 100_000_000), (64, 10_000_000))


def _write(fmt: str, recs: list[Any], config: Any) -> tuple[int, int, float]:
    """(bytes, gzip'ed bytes, seconds) of writing `recs` in `fmt`."""
    from engine.chrome import BUSY_INSTANTS_MAX_RECORDS
    from engine.export import encode

    expected = BUSY_INSTANTS_MAX_RECORDS + 1 if fmt == "chrome-lean" else len(recs)
    pieces: Iterator[bytes] = encode(fmt.removesuffix("-lean"), iter(recs), config.to_dict(),
                                     expected)
    began = time.perf_counter()
    data = b"".join(pieces)
    took = time.perf_counter() - began
    return len(data), len(gzip.compress(data, 6)), took


def main() -> None:
    # bench/engine.py would shadow the engine package for a script run from bench/.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import engine.sim
    from engine.config import Config
    from engine.run import records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="chrome,chrome-lean,perfetto,jsonl")
    args = parser.parse_args()
    formats = args.formats.split(",")
    build = "compiled" if engine.sim.COMPILED else "pure"
    print(f"engine build: {build}; best of {args.repeat}; writer time only")
    print(f"{'case':24} {'format':12} {'records':>9} {'MB':>8} {'B/record':>9} "
          f"{'gzip B/rec':>10} {'k rec/s':>8} {'MB/s':>7}")
    for vcpus, end_ns in CASES:
        config = Config(scenario="zero-step", vcpus=vcpus)
        recs = list(records(config, None, end_ns))
        best: dict[str, tuple[int, int, float]] = {}
        for _ in range(args.repeat):
            for fmt in formats:  # interleaved, so that drift hits every format alike
                size, packed, took = _write(fmt, recs, config)
                if fmt not in best or took < best[fmt][2]:
                    best[fmt] = (size, packed, took)
        case = f"zero-step {vcpus} vCPUs {end_ns // 1_000_000} ms"
        for fmt in formats:
            size, packed, took = best[fmt]
            n = len(recs)
            print(f"{case:24} {fmt:12} {n:9d} {size / 1e6:8.1f} {size / n:9.1f} "
                  f"{packed / n:10.1f} {n / took / 1e3:8.0f} {size / took / 1e6:7.1f}")


if __name__ == "__main__":
    main()
