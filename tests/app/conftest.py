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
