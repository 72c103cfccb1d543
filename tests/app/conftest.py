"""Fixtures for the server tests: a fresh app per test on its own data dir."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

with warnings.catch_warnings():
    # Starlette 1.x warns that its TestClient will move to httpx2; not our code.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from app.server import create_app
from app.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


# The server answers only to its own address (app.security.HostPolicy): the test client
# talks to it as a browser on this machine would, not as TestClient's "testserver".
BASE_URL = "http://127.0.0.1:8000"


class LocalClient(TestClient):
    """TestClient whose WebSockets go to BASE_URL too (TestClient's own use "testserver")."""

    def websocket_connect(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().websocket_connect(urljoin("ws://127.0.0.1:8000", url), *args, **kwargs)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with LocalClient(create_app(settings), base_url=BASE_URL) as test_client:
        yield test_client


def make_client(settings: Settings, **headers: str) -> TestClient:
    """A client for `settings` (use it as a context manager)."""
    return LocalClient(create_app(settings), headers=headers, base_url=BASE_URL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave this directory's slow tests out unless a -m expression was given."""
    if config.getoption("markexpr"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
