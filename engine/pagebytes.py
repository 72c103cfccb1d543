"""One byte per guest page: page states, attributes and per-GPA lock states.

A `vec[u8]` from librt (mypyc's runtime library): compiled, indexing one is a native load
or store, where a bytearray goes through Python's generic item protocol with a boxed index
(about ten times the cost, measured); as Python source, it indexes like a bytearray.
"""

from __future__ import annotations

from typing import Final

from librt.vecs import vec
from mypy_extensions import u8

_SCAN_CHUNK: Final = 1 << 14  # pages copied at a time by find_either

# Page states, one byte per guest page (the module's view of its SEPT leaf entry).
UNMAPPED: Final = 0
PENDING: Final = 1  # AUGed, not yet accepted by the guest
ACCEPTED: Final = 2
BLOCKED: Final = 3  # TDH.MEM.RANGE.BLOCK done, not yet removed
LEAKED: Final = 4  # blocked for good: the zap path gave up on its REMOVE

# 2 MB regions, one byte per 512 pages (sim.huge): whether the region is one 2 MB leaf
# in the secure EPT. Its 512 page bytes keep the page states above (PENDING, ACCEPTED,
# BLOCKED, LEAKED), so the guest and the zap path read pages as they always do.
NOT_HUGE: Final = 0
HUGE: Final = 1  # a 2 MB leaf (AUGed at 2M)
HUGE_BLOCKED: Final = 2  # the 2 MB leaf is blocked (RANGE.BLOCK at 2M), not yet demoted


def page_bytes(count: int) -> vec[u8]:
    """`count` zero bytes."""
    return vec[u8](bytes(count))


def fill(pages: vec[u8], lo: int, hi: int, value: int) -> None:
    """Set pages lo..hi-1 to `value`."""
    for page in range(lo, hi):
        pages[page] = value


def find_either(pages: vec[u8], a: int, b: int, lo: int, hi: int) -> int:
    """The first page in lo..hi-1 whose byte is `a` or `b`, or -1 (a scan at C speed)."""
    view = memoryview(pages)
    for start in range(lo, hi, _SCAN_CHUNK):
        chunk = view[start:min(start + _SCAN_CHUNK, hi)].tobytes()
        hits = [i for i in (chunk.find(a), chunk.find(b)) if i >= 0]
        if hits:
            return start + min(hits)
    return -1
