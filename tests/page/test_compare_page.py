"""The dashboard tells the truth and compares (issue 12), in a real headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import ARTIFACTS, Console, LiveServer, wait_bins
from tests.page.test_dashboard import pause, set_field, start

pytestmark = pytest.mark.browser
OpenPage = Callable[..., tuple[Page, Console]]

# The time figure's heatmap: the run's rows, a blank row, then the twin's rows.
HEATMAP_SUMS = """() => {
  const el = document.getElementById('heatmap'), z = el.data[0].z, k = el.layout.yaxis.ticktext.length;
  const sum = (rows) => rows.reduce((s, row) => s + row.reduce((a, v) => a + (v ?? 0), 0), 0);
  return k % 2 === 0 ? [sum(z.slice(0, k / 2)), sum(z.slice(k / 2 + 1))] : [sum(z), null];
}"""
TEXT_BOXES = """(selector) => [...document.querySelectorAll(selector)]
  .filter((e) => e.getClientRects().length && e.textContent.trim() !== '')
  .map((e) => { const r = e.getBoundingClientRect();
    return {text: e.textContent, l: r.left, t: r.top, r: r.right, b: r.bottom}; })"""


def overlapping(boxes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of text boxes that overlap by more than a pixel each way."""
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if min(a["r"], b["r"]) - max(a["l"], b["l"]) > 1 and min(a["b"], b["b"]) - max(a["t"], b["t"]) > 1:
                out.append((a["text"], b["text"]))
    return out


def compare_with(page: Page, policy: str) -> None:
    page.get_by_label("Twin policy").select_option(policy)
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_role("button", name="Stop comparing")).to_be_enabled()


def test_compare_shows_two_heatmaps_matching_the_twins_stats(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    expect(page.get_by_role("group", name="Compare with")).to_be_visible()
    compare_with(page, "upstream")
    info = server.api("GET", "/api/compare").json()
    assert info["on"] and info["changes"] == {"policy": "upstream"}
    page.get_by_label("Show empty rows").check()
    start(page)
    wait_bins(page, 15)
    set_field(page, "Retry max", "4")
    wait_bins(page, page.evaluate("window.tdxDashboard.store.x.length") + 5)
    pause(page, server)
    stats = server.api("GET", "/api/stats").json()
    twin = stats["twin"]
    assert twin["run_id"] == info["run_id"] and twin["sim_ns"] == stats["sim_ns"]
    # both heatmaps, every bin in the window: their counts are the two runs' BUSY totals
    page.wait_for_function(f"JSON.stringify(({HEATMAP_SUMS})()) === JSON.stringify([{stats['busy']}, {twin['busy']}])",
                           timeout=5000)
    ticks = page.evaluate("document.getElementById('heatmap').layout.yaxis.ticktext")
    hello = page.evaluate("window.tdxDashboard.store.hello.operands")
    assert ticks == hello + hello
    # headline numbers side by side, with the difference
    expect(page.locator("#t-giveups")).to_have_text(
        f"twin {twin['giveups']:,} ({twin['giveups'] - stats['giveups']:+,})".replace("+0", "0"))
    # the twin is a run of its own in the list, marked as such
    row = page.locator(f"#runs-body tr[data-run-id='{twin['run_id']}']")
    expect(row.locator(".tag", has_text="twin")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare-1280x720.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(600)
    page.screenshot(path=str(ARTIFACTS / "compare-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    page.get_by_role("button", name="Stop comparing").click()
    expect(page.locator("#compare-info")).to_be_hidden()
    assert server.api("GET", "/api/compare").json()["on"] is False
    assert console.errors == []


def test_speed_does_not_change_the_bin_width(server: LiveServer, open_page: OpenPage) -> None:
    page, _ = open_page(server)
    expect(page.locator("#bin-width")).to_have_text("1 bin = 100 µs simulated")
    start(page)
    wait_bins(page, 5)
    set_field(page, "Speed", "10000")
    deadline = time.monotonic() + 5
    while server.api("GET", "/api/config").json()["speed"] != 10000:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    frames = page.evaluate("window.tdxDashboard.perf.frames")
    page.wait_for_function(f"window.tdxDashboard.perf.frames >= {frames + 10}")
    expect(page.locator("#bin-width")).to_have_text("1 bin = 100 µs simulated")
    assert page.evaluate("window.tdxDashboard.store.binNs") == 100_000
    # ten times the speed: about ten bins a frame now, not one ten times as wide
    assert page.evaluate("window.tdxDashboard.store.lastFrame.bins.length") >= 5
    # even ticks: round simulated times at a constant step
    axis = page.evaluate("document.getElementById('heatmap').layout.xaxis")
    steps = {round(b - a, 6) for a, b in zip(axis["tickvals"], axis["tickvals"][1:], strict=False)}
    assert len(steps) == 1 and len(axis["tickvals"]) >= 3


def test_retry_max_change_is_marked_and_the_histogram_starts_again(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    start(page)
    wait_bins(page, 10)
    set_field(page, "Retry max", "4")
    mark = page.locator(".figure-label-mark", has_text="retry max 16 → 4")
    expect(mark).to_be_visible()
    controls = [r for r in server.api("GET", "/api/runs").json() if r["current"]][0]["timeline"]
    assert controls[-1]["changes"] == {"retry_max": 4}
    shapes = page.evaluate("document.getElementById('heatmap').layout.shapes")
    assert any(s["x0"] == controls[-1]["t_ns"] / 100_000 - 0.5 for s in shapes)
    wait_bins(page, page.evaluate("window.tdxDashboard.store.x.length") + 10)
    expect(page.locator("#histogram .annotation-text")).to_have_text("retry max 4")
    since = page.evaluate("document.getElementById('histogram').data[0]")
    page.get_by_role("button", name="Whole run").click()
    page.wait_for_function("document.getElementById('histogram').layout.datarevision.endsWith('/true')")
    whole = page.evaluate("document.getElementById('histogram').data[0]")
    assert sum(whole["y"]) > sum(since["y"]) > 0
    expect(page.locator("#histogram .annotation-text")).to_have_text("retry max 4")  # always the current cap
    assert console.errors == []


def test_a_large_td_lags_honestly_and_frames_keep_coming(server: LiveServer, open_page: OpenPage) -> None:
    page, _ = open_page(server)
    set_field(page, "vCPUs", "512")
    expect(page.get_by_label("vCPUs", exact=True)).to_have_value("512")
    page.wait_for_function("window.tdxDashboard.store.config.vcpus === 512")
    start(page)
    page.wait_for_timeout(2500)
    frames = page.evaluate("window.tdxDashboard.perf.frames")
    page.wait_for_timeout(2000)
    rate = (page.evaluate("window.tdxDashboard.perf.frames") - frames) / 2
    assert rate >= 5, f"{rate} frames a second reached the page"
    pace = page.evaluate("window.tdxDashboard.store.pace")
    assert pace["ratio"] < 1 and pace["fps"] >= 5, pace
    text = page.locator("#h-lagging").text_content() or ""
    assert text.endswith("fps") and int(text.split(" %")[0]) < 100
    if pace["lagging"]:
        expect(page.locator("#h-lagging")).to_have_attribute("data-lagging", "true")
        expect(page.locator("#h-pace-detail")).to_contain_text("lagging")
    pause(page, server)


BAD_SCENARIO = 'name = "bad-td"\ndescription = "a TD of no vCPUs"\n\n[td]\nvcpus = 0\n'
GOOD_SCENARIO = ('name = "one-vcpu"\ndescription = "the zero-step workload on one vCPU"\n'
                 "duration_us = 100000\n\n[td]\nvcpus = 1\n")


def test_upload_shows_problems_at_their_line_and_every_page_sees_new_scenarios(
        server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    other, _ = open_page(server)
    page.get_by_label("Scenario TOML").fill(BAD_SCENARIO)
    page.get_by_role("button", name="Upload scenario").click()
    refused = server.api("POST", "/api/scenarios", content=BAD_SCENARIO).json()
    message = refused["detail"][0]["message"]
    line = page.locator("#upload-lines li[data-line='5']")
    expect(line.locator("code")).to_have_text("5 | vcpus = 0")
    expect(line.locator(".field-error")).to_have_text(f"line 5: td.vcpus: {message}")
    # a good one: accepted, listed on the other page at once, its [td] applied visibly
    page.get_by_label("Scenario TOML").fill(GOOD_SCENARIO)
    page.get_by_role("button", name="Upload scenario").click()
    expect(page.locator("#upload-result")).to_contain_text("one-vcpu accepted")
    expect(other.locator("#f-scenario option[value='one-vcpu']")).to_have_count(1)
    other.get_by_label("Scenario", exact=True).select_option("one-vcpu")
    expect(other.locator("#notice")).to_contain_text("vCPUs set to 1 by one-vcpu")
    expect(other.get_by_label("vCPUs", exact=True)).to_have_value("1")
    other.get_by_label("Scenario", exact=True).select_option("zero-step")
    expect(other.get_by_label("vCPUs", exact=True)).to_have_value("8")
    expect(other.locator("#notice")).to_contain_text("vCPUs back to 8")
    # the browser logs the refused upload's 422 itself; nothing else went wrong
    assert [e for e in console.errors if "status of 422" not in e] == []


def test_empty_state_notices_and_runs_list(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    expect(page.locator("#empty-state")).to_contain_text("Press Start")
    set_field(page, "Seed", "3")
    expect(page.locator("#notice")).to_contain_text("Seed changed")
    runs = len(server.api("GET", "/api/runs").json())
    page.get_by_role("button", name="Reset", exact=True).click()
    expect(page.locator("#notice")).not_to_contain_text("Seed changed")
    assert len(server.api("GET", "/api/runs").json()) == runs, "Reset of an untouched run adds no run"
    start(page)
    expect(page.locator("#empty-state")).to_be_hidden()
    wait_bins(page, 5)
    run_id = page.evaluate("window.tdxDashboard.store.runId")
    row = page.locator(f"#runs-body tr[data-run-id='{run_id}']")
    attempts = row.locator("td[data-count='attempts']")
    first = attempts.text_content()
    wait_bins(page, 10)
    expect(attempts).not_to_have_text(first or "")  # the current row follows the frames
    for name in ("Scenario", "Policy", "Retry max", "Zero-step", "Module", "vCPUs", "Seed"):
        expect(page.locator("#runs-body").locator(f"td[data-label='{name}']").first).to_be_attached()
    set_field(page, "Retry max", "6")
    expect(row.locator(".tag", has_text="changed live")).to_be_visible()
    row.get_by_role("button", name=f"Details of run {run_id}").click()
    details = page.locator(f"tr[data-details-for='{run_id}']")
    expect(details.locator("caption", has_text="By leaf")).to_be_visible()
    expect(details).to_contain_text("retry max 16 → 6")
    expect(page.locator("#caption")).to_contain_text("BUSY")
    assert console.errors == []


def test_layout_fits_and_labels_do_not_overlap(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    compare_with(page, "vmm_lock")
    page.get_by_label("Policy", exact=True).select_option("vmm_lock")
    start(page)
    wait_bins(page, 10)
    set_field(page, "Retry max", "8")
    wait_bins(page, page.evaluate("window.tdxDashboard.store.x.length") + 5)
    page.wait_for_timeout(300)
    for selector in ("#heatmap", "#histogram"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720, (selector, box)
    texts = page.evaluate(TEXT_BOXES, "#heatmap svg text, #histogram svg text, .figure-label, .colorscale span")
    assert len(texts) > 10
    assert overlapping(texts) == []
    # the Policy selects show their longest name whole
    longest = max(page.evaluate("window.tdxDashboard.store.hello.policies"), key=len)
    fits = page.evaluate("""(longest) => ['f-policy', 'c-policy'].map((id) => {
        const s = document.getElementById(id);
        const c = document.createElement('canvas').getContext('2d'); c.font = getComputedStyle(s).font;
        return c.measureText(longest).width + 24 <= s.clientWidth; })""", longest)
    assert fits == [True, True], longest
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(600)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    texts = page.evaluate(TEXT_BOXES, "#heatmap svg text, #histogram svg text, .figure-label")
    assert overlapping(texts) == []
    ticks = page.evaluate("document.getElementById('heatmap').layout.xaxis.tickvals.length")
    assert ticks >= 3, "the time axis keeps several ticks at 390 px"
    assert console.errors == []


def test_a_twin_started_mid_run_fills_the_window_from_the_start(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    page.get_by_label("Show empty rows").check()
    start(page)
    wait_bins(page, 12)
    compare_with(page, "none")
    page.wait_for_function("window.tdxDashboard.store.twin.frame && !window.tdxDashboard.store.twin.frame.catching_up")
    wait_bins(page, page.evaluate("window.tdxDashboard.store.x.length") + 3)
    pause(page, server)
    stats = server.api("GET", "/api/stats").json()
    assert stats["twin"]["sim_ns"] == stats["sim_ns"]
    page.wait_for_function(f"JSON.stringify(({HEATMAP_SUMS})()) === "
                           f"JSON.stringify([{stats['busy']}, {stats['twin']['busy']}])", timeout=5000)
    assert console.errors == []


def test_the_caption_names_the_lock_the_leaf_and_who_could_hold_it(server: LiveServer,
                                                                  open_page: OpenPage) -> None:
    """In `conversion` the zap thread's RANGE.BLOCK takes the SEPT tree exclusively while
    vCPUs AUG under it: the caption names the lock, the leaf that met it and, from the
    module's lock tables, the leaves that could have held it and ran in the window."""
    page, console = open_page(server)
    page.get_by_label("Scenario", exact=True).select_option("conversion")
    start(page)
    wait_bins(page, 10)
    caption = page.locator("#caption")
    expect(caption).to_contain_text(" vs TDH.")
    text = caption.text_content() or ""
    operand, rest = text.removeprefix("Most BUSY: ").split(" (", 1)
    hello = page.evaluate("window.tdxDashboard.store.hello")
    leaf = rest.split("): ", 1)[1].split(" ")[0]
    holder = rest.split(" vs ", 1)[1].split(" ")[0]
    assert holder in hello["conflicts"]["1.5"][operand][leaf]
    assert console.errors == []
