"""The token in a real browser: opening the page once with ?token= is enough, and the token
shows up in no later URL the page requests (socket, REST, exports) nor in its address bar."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser

from app.server import create_app
from app.settings import Settings
from tests.page.conftest import STATIC, free_port, wait_connected

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    settings = Settings(port=port, data_dir=tmp_path / "data", static_dir=STATIC, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


def test_the_token_leaves_every_url_after_the_first(browser: Browser, guarded: str) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda ws: urls.append(ws.url))
    page.goto(f"{guarded}/?token={TOKEN}")
    wait_connected(page)
    assert TOKEN not in page.url
    cookie = {c["name"]: c for c in context.cookies()}["tdx_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("window.tdxDashboard.store.state === 'running'")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export JSONL").click()
    assert TOKEN not in download.value.url
    page.reload()  # the token is gone from the page; the cookie still carries it
    wait_connected(page)
    page.get_by_role("button", name="Pause").click()
    end = time.monotonic() + 10
    while httpx.get(f"{guarded}/api/stats").json()["state"] != "paused":
        assert time.monotonic() < end, "the page's Pause was not accepted"
        time.sleep(0.05)
    assert urls[0].endswith(f"?token={TOKEN}")
    assert [u for u in urls[1:] if "token" in u] == []
    context.close()
