"""Fan-out of server messages to WebSocket clients, each through its own bounded queue."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Hub:
    """Every client gets a bounded queue of ready-to-send JSON texts.

    `publish` never waits: when a client's queue is full its oldest message is dropped
    (the newest frame is the one that matters), so a stuck client costs a fixed amount of
    memory and never slows the others or the runner.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int = 32) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._queues: set[asyncio.Queue[str]] = set()
        self.dropped = 0

    @property
    def clients(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self._queue_size)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._queues.discard(queue)

    def offer(self, queue: asyncio.Queue[str], text: str) -> None:
        """Queue `text` for one client, dropping its oldest message if the queue is full."""
        if queue.full():
            queue.get_nowait()
            self.dropped += 1
        queue.put_nowait(text)

    def publish(self, text: str) -> None:
        """Queue `text` for every client; call on the event loop's thread."""
        for queue in self._queues:
            self.offer(queue, text)

    def publish_threadsafe(self, text: str) -> None:
        """`publish` from another thread (the runner's)."""
        try:
            self._loop.call_soon_threadsafe(self.publish, text)
        except RuntimeError:  # the loop closed while the runner was finishing a tick
            log.debug("hub: loop closed, message dropped")
