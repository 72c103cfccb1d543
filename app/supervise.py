"""Supervision of the runner's thread: calls with a time limit, the loop started again
after a failure, and whether the runner is up (GET /healthz)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
STALL_S = 5.0  # a loop that has not gone round for this long is down


class RunnerUnavailable(Exception):
    """The runner could not answer a route in time, or is down; the message says why."""


class Supervisor:
    """Watches one loop thread. The loop calls `beat` every time round; `run` starts it
    again after an exception (after `on_failure`, which pauses the run and says why)."""

    def __init__(self, call_timeout_s: float, restart_delay_s: float) -> None:
        self.call_timeout_s = call_timeout_s
        self.restart_delay_s = restart_delay_s
        self.thread: threading.Thread | None = None
        self._restarting: str | None = None
        self._beat = time.monotonic()

    def beat(self) -> None:
        self._beat = time.monotonic()

    def down(self) -> str | None:
        """Why the loop cannot take commands now, or None."""
        if self.thread is None or not self.thread.is_alive():
            return "its thread is not running"
        if self._restarting is not None:
            return self._restarting
        stalled = time.monotonic() - self._beat
        if stalled > STALL_S:
            return f"one engine step has taken {stalled:.0f} s so far"
        return None

    async def wait(self, future: concurrent.futures.Future[T]) -> T:
        """The result of a command handed to the loop, or RunnerUnavailable after the
        call timeout: a route never waits for ever on a loop that is stuck or gone."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.call_timeout_s)
        except TimeoutError:  # wait_for cancelled the future: a late loop skips it
            raise RunnerUnavailable(
                f"the runner did not answer within {self.call_timeout_s:g} s "
                f"({self.down() or 'it is busy in an engine step'})") from None

    def run(self, main: Callable[[], None], on_failure: Callable[[Exception], None],
            stopping: threading.Event) -> None:
        """`main` until `stopping` is set, started again after a failure."""
        while not stopping.is_set():
            try:
                main()
            except Exception as exc:  # a bug or a storage fault: pause, tell, go on
                self._restarting = f"restarting after {type(exc).__name__}: {exc}"
                on_failure(exc)
                stopping.wait(self.restart_delay_s)
                self._restarting = None
