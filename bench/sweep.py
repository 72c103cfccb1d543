"""Sweep throughput: rows per second for 1 and 2 local workers and a 2-worker Dask cluster.

The same small grid on each executor, side by side in one run (a shared machine slows
them alike); rounds alternate the order. Prints rows/s per executor, the 2-worker/1-worker
scaling ratio, and the load average before and after.

    python3 bench/sweep.py [--rounds 2] [--duration-us 1500] [--seeds 4]

Needs the [dask] extra for the cluster column (skipped, with a note, without it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# bench/engine.py beside this file would shadow the engine package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from app.sweep import execute  # noqa: E402
from app.sweep.driver import tasks_of  # noqa: E402
from app.sweep.spec import parse_sweep  # noqa: E402

GRID = """\
scenario = "zero-step"
duration_us = {duration_us}
seeds = {seeds}
[axes]
vcpus = [8, 16, 32]
policy = ["bounded", "backoff"]
retry_max = [0, 2, 8, 32]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """A `dask scheduler` and two single-threaded `dask worker` processes on loopback."""

    def __init__(self, workers: int = 2) -> None:
        dask = shutil.which("dask") or str(Path(sys.executable).parent / "dask")
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                        str(port), "--no-dashboard"], **quiet)]
        self.procs += [subprocess.Popen([dask, "worker", self.address, "--nthreads", "1",
                                         "--no-nanny", "--no-dashboard"], **quiet)
                       for _ in range(workers)]
        from distributed import Client

        with Client(self.address, timeout="20s", set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=30)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def _rate(tasks: list, run: object) -> float:
    start = time.perf_counter()
    rows = sum(1 for _, row, _ in run(tasks) if row is not None)  # type: ignore[operator]
    assert rows == len(tasks), "a point failed"
    return rows / (time.perf_counter() - start)


def _cpu_work_s(tasks: list) -> float:
    """The grid's CPU time, computed in this process: an executor that did it in W seconds
    of wall time got (work / W) cores of the shared machine."""
    from app.sweep.point import run_task

    start = time.process_time()
    for task in tasks:
        run_task(task)
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration-us", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    sweep = parse_sweep(GRID.format(duration_us=args.duration_us, seeds=args.seeds), "bench")
    tasks = tasks_of(sweep)
    stop = threading.Event()
    cluster = None
    try:
        cluster = Cluster(2)
    except ImportError:
        print("dask.distributed is not installed: no cluster column (pip install '.[dask]')")
    # nice 0 like the Dask workers: compared as equals, not behind the machine's other work
    runs = {"local, 1 worker": lambda t: execute.local(t, 1, stop, 0),
            "local, 2 workers": lambda t: execute.local(t, 2, stop, 0)}
    if cluster is not None:
        client = execute.connect(cluster.address)
        runs["dask, 2 workers"] = lambda t: execute.dask(t, client, stop)
    load_before = os.getloadavg()
    print(f"grid: {len(sweep.points())} points x {sweep.seeds} seeds = {len(tasks)} rows of "
          f"{sweep.duration_us} us; load average before {load_before[0]:.2f}")
    work_s = _cpu_work_s(tasks)
    print(f"CPU work of the grid, in-process: {work_s:.1f} s ({len(tasks) / work_s:.2f} rows "
          "per CPU-second)")
    best: dict[str, float] = {}
    try:
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                rate = _rate(tasks, runs[name])
                best[name] = max(best.get(name, 0.0), rate)
                cores = work_s / (len(tasks) / rate)
                print(f"  round {r + 1}: {name:18} {rate:7.2f} rows/s  ({cores:.2f} cores "
                      "obtained)")
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    print(f"load average after {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    for name, rate in best.items():
        print(f"{name:18} {rate:7.2f} rows/s (best of {args.rounds})")
    one, two = best["local, 1 worker"], best["local, 2 workers"]
    print(f"scaling, 2 local workers / 1: {two / one:.2f}x")
    if "dask, 2 workers" in best:
        print(f"dask 2 workers / local 1:     {best['dask, 2 workers'] / one:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
