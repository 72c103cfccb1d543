"""The hub: bounded per-client queues that drop the oldest message, never block."""

from __future__ import annotations

import asyncio

from app.hub import Hub


def test_a_full_queue_drops_its_oldest_message() -> None:
    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), queue_size=3)
        slow, fast = hub.subscribe(), hub.subscribe()
        for i in range(10):
            hub.publish(str(i))
            assert fast.get_nowait() == str(i)
        assert [slow.get_nowait() for _ in range(slow.qsize())] == ["7", "8", "9"]
        assert hub.dropped == 7
        hub.unsubscribe(slow)
        hub.unsubscribe(fast)
        assert hub.clients == 0

    asyncio.run(scenario())


def test_publish_from_another_thread() -> None:
    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop())
        queue = hub.subscribe()
        await asyncio.to_thread(hub.publish_threadsafe, "x")
        assert await asyncio.wait_for(queue.get(), 1) == "x"

    asyncio.run(scenario())
