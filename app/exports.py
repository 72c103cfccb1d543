"""Exports in flight: at most Settings.max_exports at once, and which encodings a client takes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator


class Exports:
    """How many exports are being written; at most `limit` at once (Settings.max_exports)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.running >= self.limit:
                return False
            self.running += 1
            return True

    def held(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """`pieces`, giving the slot back once: when they end or fail, or when the response
        is dropped (a client gone before or while it was sent)."""
        return _Held(pieces, self._give_back)

    def _give_back(self) -> None:
        with self._lock:
            self.running -= 1


class _Held:
    """An iterator that calls `done` once, when exhausted, failed, closed or collected."""

    def __init__(self, pieces: Iterator[bytes], done: Callable[[], None]) -> None:
        self._pieces = pieces
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._pieces)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()

    def __del__(self) -> None:
        self.close()




def accepts_gzip(accept_encoding: str) -> bool:
    """True when an Accept-Encoding header takes gzip (RFC 9110 12.5.3: q=0 refuses)."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False
