"""Where the points run: a local pool of low-priority processes, or a Dask cluster."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from app.sweep.point import PointError, Task, lower_priority, run_task

# (task, row, None) when it ran; (task, None, "ErrorType: message") when it failed.
Outcome = tuple[Task, dict[str, Any] | None, str | None]


def default_workers() -> int:
    return os.cpu_count() or 1


def _error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PointError) else f"{type(exc).__name__}: {exc}"


def local(tasks: list[Task], workers: int, stop: threading.Event,
          nice: int = 19) -> Iterator[Outcome]:
    """Run `tasks` on `workers` processes at `nice`; outcomes in completion order.

    At most two tasks per worker are in flight, so a stop (or a kill) leaves little
    half-done work behind and memory stays flat however large the grid.
    """
    # forkserver: the workers do not inherit the caller's threads (a server, a test run).
    context = multiprocessing.get_context("forkserver")
    pending = list(reversed(tasks))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=lower_priority, initargs=(nice,)) as pool:
        running: dict[Future[dict[str, Any]], Task] = {}
        try:
            while pending or running:
                while pending and len(running) < 2 * workers and not stop.is_set():
                    task = pending.pop()
                    running[pool.submit(run_task, task)] = task
                if not running:
                    break
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    exc = future.exception()
                    yield (task, None, _error(exc)) if exc else (task, future.result(), None)
                if stop.is_set():
                    pending.clear()
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def connect(address: str) -> Any:
    """A `distributed.Client` of the cluster at `address`; RuntimeError naming the address
    when the extra is missing or no scheduler answers (before anything is written)."""
    try:
        from distributed import Client
    except ImportError as exc:  # the optional extra is not installed
        raise RuntimeError("--scheduler needs dask.distributed: pip install "
                           "'tdx-contention[dask]'") from exc
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"no Dask scheduler answers at {address}: {exc}") from None


def dask(tasks: list[Task], client: Any, stop: threading.Event) -> Iterator[Outcome]:
    """Run `tasks` on the Dask distributed cluster of `client` (see `connect`)."""
    from distributed import as_completed

    # pure=False: two tasks may be equal (a re-run row), each is still computed once here.
    futures = client.map(run_task, tasks, pure=False)
    by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    try:
        for future in as_completed(futures, loop=client.loop):
            task = by_key[future.key]
            if future.status == "error":
                yield task, None, _error(future.exception())
            else:
                yield task, future.result(), None
            if stop.is_set():
                break
    finally:
        client.cancel(futures)
