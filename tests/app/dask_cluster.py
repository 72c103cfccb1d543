"""A real Dask cluster on loopback: a `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.app.live_server import free_port

DASK = str(Path(sys.executable).parent / "dask")


@contextmanager
def dask_cluster(workers: int = 2) -> Iterator[str]:
    """Start a scheduler and `workers` single-threaded worker processes; yields the
    scheduler's address once every worker has joined."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, **quiet)]
    try:
        procs += [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                    "--no-dashboard", "--no-nanny", "--host", "127.0.0.1"], env=env, **quiet)
                  for _ in range(workers)]
        with Client(address, timeout="20s", set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=30)
        yield address
    finally:
        for proc in reversed(procs):
            proc.kill()  # our own test processes; nothing of theirs needs saving
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
