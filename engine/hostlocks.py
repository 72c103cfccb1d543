"""KVM's own host-side locks, which wait instead of failing: mmu_lock and the vmm mutex."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Waiter = Callable[[], None]


class RwLock:
    """KVM's mmu_lock: the fault path takes it for read, the zap path for write.

    Fair like Linux's qrwlock: once a writer waits, new readers queue behind it.
    Grants happen at the current simulated time by calling the waiter.
    """

    __slots__ = ("readers", "writer", "queue")

    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.queue: deque[tuple[bool, Waiter]] = deque()

    def acquire(self, write: bool, granted: Waiter) -> None:
        if not self.queue and not self.writer and (not write or not self.readers):
            if write:
                self.writer = True
            else:
                self.readers += 1
            granted()
        else:
            self.queue.append((write, granted))

    def release(self, write: bool) -> None:
        if write:
            self.writer = False
        else:
            self.readers -= 1
        self._grant()

    def _grant(self) -> None:
        while self.queue and not self.writer:
            write, granted = self.queue[0]
            if write:
                if self.readers:
                    return
                self.queue.popleft()
                self.writer = True
                granted()
                return
            self.queue.popleft()
            self.readers += 1
            granted()


class Mutex:
    """The `vmm_lock` policy's host mutex around SEPT SEAMCALLs: FIFO hand-over."""

    __slots__ = ("held", "queue")

    def __init__(self) -> None:
        self.held = False
        self.queue: deque[Waiter] = deque()

    def acquire(self, granted: Waiter) -> None:
        if self.held:
            self.queue.append(granted)
        else:
            self.held = True
            granted()

    def release(self) -> None:
        if self.queue:
            self.queue.popleft()()
        else:
            self.held = False
