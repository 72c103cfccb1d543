"""The Sweeps view in headless Chromium: start a sweep, watch it, see its figure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from app.settings import Settings
from tests.app.live_server import live_server
from tests.page.conftest import ARTIFACTS, STATIC, Console, LiveServer

pytestmark = pytest.mark.browser

SWEEP = """\
name = "page-test"
scenario = "zero-step"
duration_us = 4000
seeds = 3
[axes]
vcpus = [8, 48]
policy = ["bounded", "backoff"]
retry_max = [0, 2, 8, 32]
"""


def frames_per_second(live: LiveServer, seconds: float) -> float:
    """Frames the live run sends over the WebSocket in `seconds`, per second."""
    with connect(live.url.replace("http", "ws") + "/ws") as ws:
        json.loads(ws.recv())  # hello
        end, frames = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            if json.loads(ws.recv(timeout=5))["type"] == "frame":
                frames += 1
    return frames / seconds


def test_start_watch_and_see_a_sweep(server: LiveServer, browser: object) -> None:
    """From the main page's Sweeps link: start an edited sweep, see progress move while
    the live run keeps at least 5 frames a second, then the figure and answer table."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page: Page = context.new_page()
    console = Console(page)
    page.goto(server.url + "/")
    page.get_by_role("link", name="Sweeps").click()
    expect(page).to_have_title("tdx-contention · sweeps")
    expect(page.get_by_label("Built-in sweep")).to_have_value("retry-budget")
    assert 'name = "retry-budget"' in page.get_by_label("Sweep file (TOML; edit before starting)").input_value()
    page.get_by_label("Sweep file (TOML; edit before starting)").fill('scenario = "nope"\n')
    page.get_by_role("button", name="Start sweep").click()
    expect(page.locator("#start-errors")).to_contain_text("scenario: unknown scenario")

    server.api("POST", "/api/run/start").raise_for_status()
    page.get_by_label("Sweep file (TOML; edit before starting)").fill(SWEEP)
    page.get_by_role("button", name="Start sweep").click()
    status = page.locator("#sweep-status")
    expect(status).to_contain_text("running", timeout=15_000)
    expect(page.get_by_role("button", name="Cancel sweep")).to_be_enabled()
    rate = frames_per_second(server, 2.0)
    seen = []
    end = time.monotonic() + 120
    while "done" not in status.inner_text() and time.monotonic() < end:
        seen.append(page.locator("#sweep-progress").evaluate("p => p.value"))
        page.wait_for_timeout(200)
    assert len(set(seen)) >= 2, f"the progress bar never moved: {seen}"
    assert "done" in status.inner_text()
    assert rate >= 5, f"the live run sent {rate:.1f} frames/s while the sweep ran"
    expect(status).to_contain_text("48 of 48 rows")
    expect(page.get_by_role("button", name="Cancel sweep")).to_be_disabled()
    page.wait_for_function("document.getElementById('sweep-figure').data?.length >= 8")
    names = page.evaluate("document.getElementById('sweep-figure').data.map(t => t.name)")
    assert "vcpus 48, policy backoff" in names
    rows = page.locator("#answer-body tr")
    expect(rows).to_have_count(4)
    expect(page.get_by_role("link", name="report.html")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sweeps.png"), full_page=True)
    # the refused first sweep is the one failed request the browser reports
    assert [e for e in console.errors if "422" not in e] == []
    context.close()


def test_upload_then_cancel_from_the_page(server: LiveServer, browser: object,
                                          tmp_path: Path) -> None:
    """An uploaded file fills the editor; Start sweep runs it; Cancel sweep stops it."""
    context = browser.new_context()  # type: ignore[attr-defined]
    page: Page = context.new_page()
    page.goto(server.url + "/static/sweeps.html")
    upload = tmp_path / "long.toml"
    upload.write_text(SWEEP.replace("seeds = 3", "seeds = 40"))
    page.get_by_label("Upload sweep file").set_input_files(str(upload))
    expect(page.get_by_label("Sweep file (TOML; edit before starting)")).to_have_value(
        upload.read_text())
    page.get_by_role("button", name="Start sweep").click()
    expect(page.locator("#sweep-status")).to_contain_text("running", timeout=15_000)
    page.get_by_role("button", name="Cancel sweep").click()
    expect(page.locator("#sweep-status")).to_contain_text("cancelled", timeout=30_000)
    expect(page.locator("#sweep-list")).to_contain_text("cancelled")
    context.close()


def test_the_sweeps_link_keeps_the_token(tmp_path: Path, browser: object) -> None:
    """On a server with a token, the page opened as /?token=... reaches the Sweeps view
    by its link and can start a sweep (the token goes in a header, never in a URL)."""
    settings = Settings(data_dir=tmp_path / "data", token="t0ken", static_dir=STATIC)
    with live_server(settings) as url:
        context = browser.new_context()  # type: ignore[attr-defined]
        page: Page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(url + "/?token=t0ken")
        page.get_by_role("link", name="Sweeps").click()
        expect(page.get_by_label("Built-in sweep")).to_have_value("retry-budget")
        page.get_by_label("Sweep file (TOML; edit before starting)").fill(
            SWEEP.replace("seeds = 3", "seeds = 1").replace("duration_us = 4000", "duration_us = 300"))
        page.get_by_role("button", name="Start sweep").click()
        expect(page.locator("#sweep-status")).to_contain_text("done", timeout=60_000)
        assert not [u for u in requested if "t0ken" in u and not u.endswith("/?token=t0ken")]
        context.close()
