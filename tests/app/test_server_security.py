"""Safe defaults: loopback binding, the token on changes, Origin matching, serve's refusal."""

from __future__ import annotations

import argparse

import pytest
from conftest import make_client

from app.cli import build_parser
from app.security import HostPolicy, is_loopback, origin_allowed, token_ok
from app.serve import TOKEN_ENV, settings_from
from app.settings import Settings

CHANGES = [("post", "/api/run/start"), ("post", "/api/run/pause"), ("post", "/api/run/reset"),
           ("patch", "/api/config"), ("post", "/api/scenarios")]


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return Settings(data_dir=settings.data_dir, host="0.0.0.0", token="s3cret")


@pytest.mark.parametrize(("method", "url"), CHANGES)
def test_changes_need_the_token(guarded: Settings, method: str, url: str) -> None:
    with make_client(guarded) as client:
        assert client.request(method, url, json={}).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert client.request(method, url, json={}, headers=wrong).status_code == 401
        assert client.get("/api/config").status_code == 200  # reading needs none
        assert client.get("/api/stats").status_code == 200


def test_the_token_opens_changes_and_hello_says_so(guarded: Settings) -> None:
    with make_client(guarded, authorization="Bearer s3cret") as client:
        assert client.post("/api/run/start").json()["state"] == "running"
        assert client.patch("/api/config", json={"retry_max": 2}).status_code == 200
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json()["token_required"] is True


def test_no_token_needed_on_loopback(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/run/start").status_code == 200


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("origin", "host", "allowed"), [
    (None, "127.0.0.1:8000", True),
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("http://LOCALHOST:8000", "localhost:8000", True),
    ("http://example.com", "example.com:80", True),
    ("https://example.com", "example.com", True),
    ("http://[::1]:8000", "[::1]:8000", True),
    ("http://localhost:8000", "127.0.0.1:8000", False),
    ("http://127.0.0.1:9000", "127.0.0.1:8000", False),
    ("http://evil.example", "127.0.0.1:8000", False),
    ("null", "127.0.0.1:8000", False),
    ("http://127.0.0.1:8000", None, False),
])
def test_origin_allowed(origin: str | None, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host) is allowed


def test_token_ok() -> None:
    assert token_ok(None, None)
    assert token_ok("t", "Bearer t") and token_ok("t", "bearer t")
    assert not token_ok("t", None) and not token_ok("t", "Basic t") and not token_ok("t", "t")


def _serve_args(*argv: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = build_parser()
    return parser.parse_args(["serve", *argv]), parser


def test_serve_refuses_a_public_address_without_a_token(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    args, parser = _serve_args("--host", "0.0.0.0")
    with pytest.raises(SystemExit) as exit_:
        settings_from(args, parser)
    assert exit_.value.code == 2
    assert "--host" in capsys.readouterr().err


def test_serve_takes_the_token_from_option_or_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    args, parser = _serve_args("--host", "0.0.0.0", "--token", "abc", "--data-dir", "/tmp/x")
    settings = settings_from(args, parser)
    assert settings.token == "abc" and str(settings.data_dir) == "/tmp/x"
    monkeypatch.setenv(TOKEN_ENV, "fromenv")
    assert settings_from(*_serve_args("--host", "0.0.0.0")).token == "fromenv"


def test_serve_defaults_to_loopback_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = settings_from(*_serve_args())
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.token is None


@pytest.mark.parametrize(("bind", "allowed", "host", "ok"), [
    ("127.0.0.1", (), "127.0.0.1:8000", True),
    ("127.0.0.1", (), "localhost:8000", True),
    ("127.0.0.1", (), "[::1]:8000", True),
    ("127.0.0.1", (), "10.0.0.1:8000", False),
    ("127.0.0.1", (), "rebind.evil.example:8000", False),
    ("127.0.0.1", (), "", False),
    ("127.0.0.1", ("Dash.Example",), "dash.example", True),
    ("0.0.0.0", (), "192.168.1.5:8000", True),
    ("0.0.0.0", (), "localhost", True),
    ("0.0.0.0", (), "my-laptop:8000", False),
    ("::", (), "[fe80::1]:8000", True),
    ("192.168.1.5", (), "192.168.1.5:8000", True),
    ("192.168.1.5", (), "127.0.0.1:8000", False),
    ("192.168.1.5", (), "localhost:8000", False),
    ("dash.internal", (), "dash.internal:8000", True),
])
def test_host_policy(bind: str, allowed: tuple[str, ...], host: str, ok: bool) -> None:
    assert HostPolicy(bind, allowed).allows(host) is ok


def test_serve_takes_allow_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = settings_from(*_serve_args("--allow-host", "a.example", "--allow-host", "b"))
    assert settings.allow_hosts == ("a.example", "b")
