"""Hardening: other sites, foreign Host names, oversized or nested input and unaffordable
scenarios are refused, change nothing, and never wedge the runner."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_URL, make_client
from fastapi.testclient import TestClient
from live_server import live_server
from starlette.websockets import WebSocketDisconnect

from app.security import MAX_BODY_BYTES, TOKEN_COOKIE, RedactToken
from app.settings import Settings

CHANGES = [("post", "/api/run/start"), ("post", "/api/run/pause"), ("post", "/api/run/reset"),
           ("patch", "/api/config"), ("post", "/api/scenarios"),
           ("delete", "/api/scenarios/mine")]
# What a page of another site can send without a CORS preflight ("simple" requests).
SIMPLE_BODIES: list[dict[str, Any]] = [
    {"content": '{"retry_max": 3}', "headers": {"content-type": "text/plain"}},
    {"content": "retry_max=3", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    {"files": {"f": ("a.toml", b'name = "evil"\ndescription = "x"\n')}},
]
SCENARIO = 'name = "mine"\ndescription = "a posted scenario"\n'


def _snapshot(client: TestClient) -> tuple[Any, ...]:
    stats = client.get("/api/stats").json()
    return (client.get("/api/config").json(), stats["state"], stats["run_id"],
            client.get("/api/scenarios").json())


@pytest.mark.parametrize(("method", "url"), CHANGES)
@pytest.mark.parametrize("body", SIMPLE_BODIES, ids=["text", "form", "multipart"])
@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"},
                                     {"sec-fetch-site": "cross-site"},
                                     {"origin": "null"}], ids=["origin", "fetch-site", "null"])
def test_cross_site_changes_are_refused(client: TestClient, method: str, url: str,
                                        body: dict[str, Any], headers: dict[str, str]) -> None:
    client.post("/api/scenarios", content=SCENARIO).raise_for_status()
    before = _snapshot(client)
    merged = {**body.get("headers", {}), **headers}
    answer = client.request(method, url, **{**body, "headers": merged})
    assert answer.status_code == 403
    assert _snapshot(client) == before


def test_other_sites_cannot_start_exports_but_may_link_to_the_page(client: TestClient) -> None:
    cross = {"sec-fetch-site": "cross-site"}
    assert client.get("/api/export", headers=cross).status_code == 403
    assert client.get("/api/runs", headers=cross).status_code == 403
    assert client.get("/", headers=cross).status_code == 200  # a link to the dashboard
    assert client.get("/api/export?format=csv").status_code == 200  # scripts send none


def test_own_origin_and_same_site_may_change(client: TestClient) -> None:
    assert client.post("/api/run/start", headers={"origin": BASE_URL,
                                                  "sec-fetch-site": "same-origin"}).status_code == 200


def test_foreign_host_is_refused_and_allow_host_admits_it(settings: Settings) -> None:
    with make_client(settings) as client:
        answer = client.get("/api/config", headers={"host": "rebind.evil.example:8000"})
        assert answer.status_code == 400 and "--allow-host" in answer.json()["detail"]
        assert client.get("/api/config", headers={"host": "localhost:8000"}).status_code == 200
    allowed = Settings(data_dir=settings.data_dir, allow_hosts=("dash.example",))
    with make_client(allowed) as client:
        assert client.get("/api/config", headers={"host": "dash.example"}).status_code == 200
        assert client.get("/api/config", headers={"host": "other.example"}).status_code == 400


def _handshake(base: str, host: str) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        return sock.recv(4096)


def test_websocket_handshake_with_a_foreign_host_is_refused(tmp_path: Path) -> None:
    """A DNS-rebinding page's WebSocket carries its own name as Host: no upgrade."""
    with live_server(Settings(data_dir=tmp_path)) as base:
        own = _handshake(base, base.removeprefix("http://"))
        assert own.startswith(b"HTTP/1.1 101")
        foreign = _handshake(base, "rebind.evil.example:8000")
        assert foreign.startswith(b"HTTP/1.1 403") and b"101" not in foreign.split(b"\r\n")[0]


def test_page_may_not_be_framed_or_sniffed(client: TestClient) -> None:
    for url in ("/", "/api/config", "/healthz"):
        headers = client.get(url).headers
        assert "frame-ancestors 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["x-content-type-options"] == "nosniff"


def test_body_over_the_limit_is_refused(client: TestClient) -> None:
    before = _snapshot(client)
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert client.post("/api/scenarios", content=big).status_code == 413

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b"y" * (MAX_BODY_BYTES // 2)
    assert client.post("/api/scenarios", content=chunks()).status_code == 413
    assert _snapshot(client) == before


@pytest.mark.parametrize("text", ['{"speed": 1e306}', '{"speed": ' + "9" * 400 + "}",
                                  '{"speed": 1000000001}'])
def test_huge_speed_is_422_and_the_runner_keeps_answering(client: TestClient, text: str) -> None:
    client.post("/api/run/start").raise_for_status()
    answer = client.patch("/api/config", content=text)
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "speed"
    assert client.get("/api/stats").json()["state"] == "running"
    assert client.patch("/api/config", json={"speed": 1e9}).json()["speed"] == 1e9
    assert client.post("/api/run/pause").status_code == 200


def test_deeply_nested_body_is_422(client: TestClient) -> None:
    before = _snapshot(client)
    answer = client.patch("/api/config", content='{"speed": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "body"
    assert _snapshot(client) == before


@pytest.mark.parametrize(("extra", "key"), [
    ("[workload]\nzap_pages = 4\nzap_interval_ns = 0\n", "workload.zap_interval_ns"),
    ("[td]\nvcpus = 512\n[workload]\nmulti_gfn_fraction = 1.0\nmulti_gfn_count = 1000000\n",
     "workload.multi_gfn_count"),
    ("[workload]\ntd_memory_mib = 400000\n", "workload.td_memory_mib"),
    ("[workload]\ntd_memory_mib = 100000000\n", "workload.td_memory_mib"),
    ("[timing]\nseamcall_ns = 0\nvp_entry_ns = 0\ntd_exit_ns = 0\n", "timing.seamcall_ns"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "file"),
    ("[[vcpu]]\nindex = 0\nscript = [{step = \"rip\", rip = 4096, repeat = 1000000}, "
     "{step = \"rip\", rip = 8192, repeat = 1000000}]\n", "vcpu[0].script"),
])
def test_unaffordable_scenarios_are_422_naming_the_key(client: TestClient, extra: str,
                                                       key: str) -> None:
    before = _snapshot(client)
    answer = client.post("/api/scenarios", content=SCENARIO + extra)
    assert answer.status_code == 422, answer.text
    assert key in [d["field"] for d in answer.json()["detail"]]
    assert _snapshot(client) == before


def test_a_scenario_too_big_for_more_vcpus_refuses_the_patch(client: TestClient) -> None:
    """Affordable on its own 8 vCPUs, not on 512: the PATCH is 422 and nothing changes."""
    text = SCENARIO + "[workload]\nmulti_gfn_fraction = 0.5\nmulti_gfn_count = 200000\n"
    assert client.post("/api/scenarios", content=text).status_code == 201
    before = _snapshot(client)
    answer = client.patch("/api/config", json={"scenario": "mine", "vcpus": 512})
    assert answer.status_code == 422
    assert "workload.multi_gfn_count" in answer.json()["message"]
    assert _snapshot(client) == before


@pytest.mark.parametrize("size", [300_000, 2_000_000])
def test_big_scenarios_are_refused(client: TestClient, size: int) -> None:
    text = SCENARIO.replace("a posted scenario", "d" * size)
    answer = client.post("/api/scenarios", content=text)
    assert answer.status_code in (413, 422)  # over the body limit, or over the file limit
    assert "mine" not in [s["name"] for s in client.get("/api/scenarios").json()]


def test_a_file_of_many_problems_gets_a_short_answer(client: TestClient) -> None:
    text = SCENARIO + "".join(f"k{i} = 1\n" for i in range(5000))
    answer = client.post("/api/scenarios", content=text)
    # 50 problems are kept, each naming the accepted top-level keys (about 400 bytes now):
    # bounded whatever the file's size, never 5000 messages
    assert answer.status_code == 422 and len(answer.content) < 32_000
    assert answer.json()["detail"][-1]["message"] == "and 4950 more problems"


def test_a_long_dotted_key_is_refused_before_parsing(client: TestClient) -> None:
    answer = client.post("/api/scenarios", content=SCENARIO + "a" + ".a" * 50_000 + " = 1\n")
    assert answer.status_code == 422 and "dotted key" in answer.json()["message"]


def test_long_description_is_refused(client: TestClient) -> None:
    answer = client.post("/api/scenarios", content=SCENARIO.replace("a posted", "x" * 2000))
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "description"


def test_scenarios_can_be_deleted_but_not_built_ins_or_the_current_one(client: TestClient) -> None:
    assert client.post("/api/scenarios", content=SCENARIO).status_code == 201
    assert client.delete("/api/scenarios/boot").status_code == 409
    assert client.delete("/api/scenarios/nope").status_code == 404
    client.patch("/api/config", json={"scenario": "mine"}).raise_for_status()
    assert client.delete("/api/scenarios/mine").status_code == 409
    client.patch("/api/config", json={"scenario": "boot"}).raise_for_status()
    assert client.delete("/api/scenarios/mine").json() == {"deleted": "mine"}
    assert "mine" not in [s["name"] for s in client.get("/api/scenarios").json()]


def test_kept_scenarios_are_capped(client: TestClient) -> None:
    from app.scenarios import MAX_POSTED

    for n in range(MAX_POSTED):
        text = SCENARIO.replace('"mine"', f'"s{n}"')
        assert client.post("/api/scenarios", content=text).status_code == 201
    answer = client.post("/api/scenarios", content=SCENARIO)
    assert answer.status_code == 422 and "delete one first" in answer.json()["message"]
    again = SCENARIO.replace('"mine"', '"s0"').replace("a posted", "a replaced")
    assert client.post("/api/scenarios", content=again).status_code == 201  # replacing is fine


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return Settings(data_dir=settings.data_dir, token="s3cret")


def test_non_ascii_bearer_is_401(guarded: Settings) -> None:
    with make_client(guarded) as client:
        answer = client.post("/api/run/start", headers={"authorization": "Bearer é".encode()})
        assert answer.status_code == 401


def test_the_page_opened_with_the_token_sets_a_strict_cookie(guarded: Settings) -> None:
    with make_client(guarded) as client:
        assert "set-cookie" not in client.get("/?token=wrong").headers
        assert client.post("/api/run/start").status_code == 401
        cookie = client.get("/?token=s3cret").headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=s3cret;")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.post("/api/run/start").status_code == 200  # the cookie alone


def test_the_token_is_redacted_from_access_logs() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET",
                                                           "/?token=s3cret&x=1", "1.1", 200),
                               None)
    RedactToken().filter(record)
    assert "s3cret" not in record.getMessage() and "x=1" in record.getMessage()


def test_the_page_puts_no_token_in_urls() -> None:
    """The socket and export URLs the page builds carry no token (the cookie does)."""
    js = Path(__file__).resolve().parents[2] / "static" / "js"
    assert 'searchParams.set("token"' not in (js / "socket.js").read_text()
    assert 'params.set("token"' not in (js / "api.js").read_text()
    assert "history.replaceState" in (js / "api.js").read_text()


@pytest.mark.parametrize(("text", "reason"), [
    ('{"type": "ping", "pad": "' + "x" * 10_000 + '"}', "at most"),
    ("[" * 200 + "]" * 200, "nested"),
])
def test_websocket_limits_close_1008_with_a_reason(client: TestClient, text: str,
                                                   reason: str) -> None:
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "hello"
        ws.send_text(text)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
        assert closed.value.code == 1008 and reason in closed.value.reason


def test_a_flooding_websocket_client_is_closed(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        for _ in range(200):
            ws.send_text('{"type": "ping"}')
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_json()
        assert closed.value.code == 1008 and "a second" in closed.value.reason
    assert client.get("/healthz").status_code == 200



def test_exports_at_once_are_capped_and_a_slot_comes_back(settings: Settings) -> None:
    """Each export replays its run on a thread: past Settings.max_exports at once the
    server answers 503 naming the limit (the live run keeps its CPU); a slot comes back
    when an export ends."""
    capped = Settings(data_dir=settings.data_dir, max_exports=2)
    with make_client(capped) as client:
        exports = client.app.state.exports  # type: ignore[attr-defined]
        assert exports.take() and exports.take()  # two exports being written
        refused = client.get("/api/export")
        assert refused.status_code == 503
        assert "2 exports are being written already" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "5"
        exports.held(iter([b"x"])).close()  # one of them ends
        assert client.get("/api/export").status_code == 200
        assert exports.running == 1, "the finished export gave its slot back"


def test_an_export_slot_comes_back_however_the_stream_ends() -> None:
    """Exhausted, failed, closed, or dropped before it started (a client gone)."""
    import gc

    from app.exports import Exports

    exports = Exports(4)

    def failing() -> Iterator[bytes]:
        yield b"a"
        raise OSError("disk")

    for _ in range(4):
        assert exports.take()
    assert not exports.take()
    assert list(exports.held(iter([b"a", b"b"]))) == [b"a", b"b"]
    stream = exports.held(failing())
    next(stream)
    with pytest.raises(OSError):
        next(stream)
    exports.held(iter([b"a"])).close()
    dropped = exports.held(iter([b"a"]))
    del dropped
    gc.collect()
    assert exports.running == 0
