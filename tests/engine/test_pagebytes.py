"""Page bytes: a byte per guest page, and the scan the zap thread picks pages with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.pagebytes import _SCAN_CHUNK, fill, find_either, page_bytes

PAGES = 3 * _SCAN_CHUNK + 5  # the scan copies chunks: cover their edges


@given(st.dictionaries(st.integers(0, PAGES - 1), st.integers(1, 4), max_size=12),
       st.integers(0, PAGES), st.integers(0, PAGES))
def test_find_either_is_the_first_page_holding_either_byte(
        marks: dict[int, int], lo: int, hi: int) -> None:
    """find_either(a, b, lo, hi) is the first page in lo..hi-1 whose byte is a or b, or -1,
    wherever the chunks it scans in begin and end."""
    pages = page_bytes(PAGES)
    for page, value in marks.items():
        pages[page] = value
    expected = next((p for p in sorted(marks) if lo <= p < hi and marks[p] in (2, 3)), -1)
    assert find_either(pages, 2, 3, lo, hi) == expected


def test_fill_sets_a_range_and_nothing_else() -> None:
    """fill(lo, hi, v) sets pages lo..hi-1 (shared ranges, conversions to private)."""
    pages = page_bytes(10)
    fill(pages, 3, 7, 1)
    assert list(pages) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    fill(pages, 4, 6, 0)
    assert list(pages) == [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]
