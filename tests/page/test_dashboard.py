"""The dashboard in a real headless Chromium against the real app (issue 4's list)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import ARTIFACTS, Console, LiveServer, wait_bins, wait_connected

pytestmark = pytest.mark.browser

OpenPage = Callable[..., tuple[Page, Console]]
CALL_KINDS = ("seamcall", "tdcall")


def heatmap_z(page: Page) -> str:
    return page.evaluate("JSON.stringify(document.getElementById('heatmap').data[0].z)")


def start(page: Page) -> None:
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#run-state")).to_have_text("running")


def pause(page: Page, live: LiveServer) -> None:
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator("#run-state")).to_have_text("paused")
    assert live.api("GET", "/api/stats").json()["state"] == "paused"


def set_field(page: Page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")  # commits: the page sends on "change"


def test_page_loads_clean_and_heatmap_moves(server: LiveServer, open_page: OpenPage) -> None:
    """No console errors; a plotly heatmap of operands from hello whose z changes while running."""
    page, console = open_page(server)
    start(page)
    wait_bins(page, 3)
    trace = page.evaluate("""() => { const el = document.getElementById('heatmap'), t = el.data[0];
        return {type: t.type, y: el.layout.yaxis.ticktext, rows: t.z.length,
                hello: window.tdxDashboard.store.hello.operands}; }""")
    assert trace["type"] == "heatmap"
    # rows with no BUSY in the window are folded: the shown ones are hello's, in its order
    assert trace["y"] == [op for op in trace["hello"] if op in trace["y"]] and trace["rows"] == len(trace["y"])
    page.get_by_label("Show empty rows").check()
    page.wait_for_function("""() => JSON.stringify(document.getElementById('heatmap').layout.yaxis.ticktext)
        === JSON.stringify(window.tdxDashboard.store.hello.operands)""")
    page.get_by_label("Show empty rows").uncheck()
    before = heatmap_z(page)
    page.wait_for_function(f"window.tdxDashboard.store.x.length >= {3 + 5}")
    page.wait_for_timeout(200)  # let the coalesced redraw land
    assert heatmap_z(page) != before
    for name in ["Retry max", "Zero-step mitigation", "Policy", "Speed", "Scenario", "vCPUs",
                 "Module version", "Seed"]:
        expect(page.get_by_label(name, exact=True)).to_be_visible()
    for name in ["Start", "Pause", "Reset", "Export JSONL", "Export CSV", "Export Chrome trace"]:
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Connected")

    page.get_by_role("button", name="By leaf").click()
    page.wait_for_function("""() => { const names = document.getElementById('heatmap').layout.yaxis.ticktext;
        return names.length > 0 && names.every((n) => window.tdxDashboard.store.hello.leaves.includes(n)); }""")
    page.get_by_role("button", name="By operand").click()
    page.wait_for_function("""() => document.getElementById('heatmap').layout.yaxis.ticktext
        .every((n) => window.tdxDashboard.store.hello.operands.includes(n))""")

    # the retry timeline shares the heatmap's figure; zero-step marks are one filled path
    names = page.evaluate("document.getElementById('heatmap').data.map((t) => t.name)")
    assert names[1:] == ["retries", "give-ups", "zero-step"]
    assert page.locator("#heatmap .scatterlayer .trace").nth(2).locator("path.js-fill").count() == 1
    # its legend is the page's: a button hides a series and shows it again
    retries = page.get_by_role("button", name="retries / bin")
    retries.click()
    expect(retries).to_have_attribute("aria-pressed", "false")
    page.wait_for_function("document.getElementById('heatmap').data[1].visible === false")
    retries.click()
    page.wait_for_function("document.getElementById('heatmap').data[1].visible === true")
    expect(page.locator("#heatmap-scale")).to_have_attribute(
        "aria-label", re.compile(r"BUSY count per bin of 100 µs, 0 to \d+"))

    ARTIFACTS.mkdir(exist_ok=True)
    wait_bins(page, 20)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "dashboard-narrow.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    assert console.errors == []


def test_retry_max_in_ui_changes_config_and_control_record(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    start(page)
    wait_bins(page, 2)
    set_field(page, "Retry max", "5")
    deadline = time.monotonic() + 5
    while server.api("GET", "/api/config").json()["retry_max"] != 5:
        assert time.monotonic() < deadline, "PATCH never reached the server"
        time.sleep(0.05)
    # the histogram's dashed line moves with the retry max at once, not on its next redraw
    expect(page.locator("#histogram .annotation-text")).to_have_text("retry max 5")
    wait_bins(page, page.evaluate("window.tdxDashboard.store.x.length") + 2)
    pause(page, server)
    lines = server.api("GET", "/api/export", params={"format": "jsonl"}).text.splitlines()
    controls = [r for r in map(json.loads, lines) if r["kind"] == "control"]
    assert controls and controls[-1]["retry_max"] == 5
    expect(page.locator("[data-error-for='retry_max']")).to_have_text("")
    assert console.errors == []


def test_heatmap_rows_switch_while_paused(server: LiveServer, open_page: OpenPage) -> None:
    """By leaf / By operand redraw the rows at once, with no new frame to bring them."""
    page, console = open_page(server)
    start(page)
    wait_bins(page, 3)
    pause(page, server)
    hello = page.evaluate("window.tdxDashboard.store.hello")
    page.get_by_label("Show empty rows").check()  # every row, BUSY or not
    drawn = """(names) => JSON.stringify([...document.querySelectorAll('.figure-label-ytick')]
        .map((t) => t.textContent).sort()) === JSON.stringify(names)"""
    page.get_by_role("button", name="By leaf").click()
    page.wait_for_function(drawn, arg=sorted(hello["leaves"]))
    expect(page.locator("#heatmap-title")).to_have_text("BUSY per leaf")
    page.get_by_role("button", name="By operand").click()
    page.wait_for_function(drawn, arg=sorted(hello["operands"]))
    assert console.errors == []


def zero_step_rate(live: LiveServer, seconds: float) -> float:
    """Zero-step activations per simulated millisecond over `seconds` of wall time."""
    a = live.api("GET", "/api/stats").json()
    time.sleep(seconds)
    b = live.api("GET", "/api/stats").json()
    assert b["sim_ns"] > a["sim_ns"], "the run is not advancing"
    return (b["zero_step_activations"] - a["zero_step_activations"]) / ((b["sim_ns"] - a["sim_ns"]) / 1e6)


def test_zero_step_toggle_changes_activation_growth(server: LiveServer, open_page: OpenPage) -> None:
    page, _ = open_page(server)
    assert server.api("GET", "/api/config").json()["scenario"] == "zero-step"
    start(page)
    wait_bins(page, 3)
    on = zero_step_rate(server, 1.2)
    page.get_by_label("Zero-step mitigation", exact=True).uncheck()
    deadline = time.monotonic() + 5
    while server.api("GET", "/api/config").json()["zero_step"] is not False:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    off = zero_step_rate(server, 1.2)
    assert on > 0
    assert off < on / 10, (on, off)


def test_bad_retry_max_shows_server_message_and_changes_nothing(server: LiveServer, open_page: OpenPage) -> None:
    page, _ = open_page(server)
    before = server.api("GET", "/api/config").json()
    # the message the server gives for this value (a refused PATCH changes nothing)
    refused = server.api("PATCH", "/api/config", json={"retry_max": -1})
    assert refused.status_code == 422
    message = next(d["message"] for d in refused.json()["detail"] if d["field"] == "retry_max")
    set_field(page, "Retry max", "-1")
    error = page.locator("[data-error-for='retry_max']")
    expect(error).to_have_text(message)
    expect(page.get_by_label("Retry max", exact=True)).to_have_attribute("aria-invalid", "true")
    assert server.api("GET", "/api/config").json() == before
    set_field(page, "Retry max", "7")  # a good value clears the message
    expect(error).to_have_text("")
    assert server.api("GET", "/api/config").json()["retry_max"] == 7


def counts_from_records(records: list[dict[str, Any]]) -> dict[str, int]:
    calls = [r for r in records if r["kind"] in CALL_KINDS]
    return {
        "events": len(records),
        "attempts": len(calls),
        "busy": sum(r["outcome"] in ("busy", "giveup") for r in calls),
        "retries": sum(int(r["attempt"]) > 1 for r in calls),
        "giveups": sum(r["outcome"] == "giveup" for r in calls),
        "zero_step_activations": sum(r["kind"] == "zero_step" for r in records),
    }


def counts_from_chrome(trace: dict[str, Any]) -> dict[str, int]:
    events = trace["traceEvents"]
    calls = [e for e in events if e["ph"] == "X" and e.get("cat") in CALL_KINDS]
    return {
        "attempts": len(calls),
        "busy": sum(e["args"]["outcome"] in ("busy", "giveup") for e in calls),
        "retries": sum(e["args"]["attempt"] > 1 for e in calls),
        "giveups": sum(e["args"]["outcome"] == "giveup" for e in calls),
        "zero_step_activations": sum(e.get("cat") == "zero_step" for e in events),
    }


def download(page: Page, button: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.get_by_role("button", name=button, exact=True).click()
    d = info.value
    return d.suggested_filename, Path(d.path()).read_text()


def test_export_buttons_download_logs_matching_stats(server: LiveServer, open_page: OpenPage) -> None:
    page, console = open_page(server)
    start(page)
    wait_bins(page, 5)
    pause(page, server)
    stats = server.api("GET", "/api/stats").json()
    keys = ["attempts", "busy", "retries", "giveups", "zero_step_activations"]
    expected = {k: stats[k] for k in keys}
    assert expected["attempts"] > 0

    name, text = download(page, "Export JSONL")
    assert name.endswith(".jsonl")
    jsonl = counts_from_records([json.loads(line) for line in text.splitlines()])
    assert {k: jsonl[k] for k in keys} == expected and jsonl["events"] == stats["events"]

    name, text = download(page, "Export CSV")
    assert name.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {k: counts_from_records(rows)[k] for k in keys} == expected

    name, text = download(page, "Export Chrome trace")
    assert name.endswith(".json")
    assert counts_from_chrome(json.loads(text)) == expected

    # the current run is listed with its own export links
    row = page.locator(f"#runs-body tr[data-run-id='{stats['run_id']}']")
    expect(row.get_by_role("link", name=f"Download run {stats['run_id']} as JSONL")).to_be_visible()
    assert console.errors == []


def test_page_reconnects_after_server_restart(tmp_path: Path, open_page: OpenPage) -> None:
    """Stop the server, start a new one on the same port and data dir: connected within 5 s."""
    first = LiveServer(tmp_path / "data").start()
    try:
        page, _ = open_page(first)
        first.api("PATCH", "/api/config", json={"retry_max": 9})
        expect(page.get_by_label("Retry max", exact=True)).to_have_value("9")
    finally:
        first.stop()
    page.wait_for_selector("#connection:not([data-state='connected'])", timeout=10_000)
    page.wait_for_timeout(2500)  # let the back-off grow a little while the server is away
    second = LiveServer(tmp_path / "data", port=first.port).start()
    try:
        answered = time.monotonic()
        wait_connected(page, timeout_ms=5_000)
        assert time.monotonic() - answered <= 5
        config = second.api("GET", "/api/config").json()
        # the page shows the new server's config, from its hello
        expect(page.get_by_label("Retry max", exact=True)).to_have_value(str(config["retry_max"]))
        second.api("PATCH", "/api/config", json={"retry_max": 3})
        expect(page.get_by_label("Retry max", exact=True)).to_have_value("3")
    finally:
        second.stop()
