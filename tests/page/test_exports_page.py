"""The page's exports: Perfetto's native trace offered first, the size of a large export said."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import Console, LiveServer, wait_bins

pytestmark = pytest.mark.browser
OpenPage = Callable[..., tuple[Page, Console]]


def _run_a_little(page: Page, server: LiveServer) -> None:
    page.get_by_role("button", name="Start", exact=True).click()
    wait_bins(page, 3)
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator("#run-state")).to_have_text("paused")


def test_perfetto_first_and_its_download_parses(server: LiveServer, open_page: OpenPage) -> None:
    """The first export button is "Export Perfetto trace"; it downloads a .pftrace that
    Perfetto's protos parse, with a slice per attempt of the run; the runs list offers the
    same format first."""
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    page, console = open_page(server)
    buttons = page.locator(".export-buttons button")
    expect(buttons.first).to_have_text("Export Perfetto trace")
    _run_a_little(page, server)
    stats = server.api("GET", "/api/stats").json()
    with page.expect_download() as info:
        page.get_by_role("button", name="Export Perfetto trace", exact=True).click()
    assert info.value.suggested_filename.endswith(".pftrace")
    trace = pb.Trace()
    trace.ParseFromString(Path(info.value.path()).read_bytes())
    begins = [p for p in trace.packet if p.track_event.type == 1
              and len(p.track_event.debug_annotations) >= 4]
    assert len(begins) == stats["attempts"] > 0
    row = page.locator(f"#runs-body tr[data-run-id='{stats['run_id']}']")
    expect(row.get_by_role("link").first).to_have_text("Perfetto trace")
    assert console.errors == []


def test_large_export_says_its_size(server: LiveServer, open_page: OpenPage) -> None:
    """A run whose export would pass 100 MB gets the estimated size beside the buttons when
    exported (here the page is told the run has 9.8 M records: 64 vCPUs for 100 ms); a
    small run gets no note."""
    page, console = open_page(server)
    _run_a_little(page, server)
    with page.expect_download():
        page.get_by_role("button", name="Export JSONL", exact=True).click()
    expect(page.locator("#export-size")).to_have_text("")
    page.evaluate("window.tdxDashboard.store.totals.events = 9800000")
    with page.expect_download():
        page.get_by_role("button", name="Export Chrome trace", exact=True).click()
    note = page.locator("#export-size")
    expect(note).to_contain_text("Chrome trace: about 1.4 GB (9,800,000 records)")
    with page.expect_download():
        page.get_by_role("button", name="Export Perfetto trace", exact=True).click()
    expect(note).to_contain_text("Perfetto trace: about")
    assert console.errors == []
