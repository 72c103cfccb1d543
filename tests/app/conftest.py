"""Fixtures for the server tests: a fresh app per test on its own data dir."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def make_client(settings: Settings, **headers: str) -> TestClient:
    """A client for `settings` (use it as a context manager)."""
    return TestClient(create_app(settings), headers=headers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave this directory's slow tests out unless a -m expression was given."""
    if config.getoption("markexpr"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
