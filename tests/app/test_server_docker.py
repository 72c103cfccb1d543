"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[2]


def _service() -> dict[str, Any]:
    """The one service `docker compose up` starts (the others are in profiles)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = [s for s in compose["services"].values() if not s.get("profiles")]
    assert len(services) == 1
    service: dict[str, Any] = services[0]
    return service


def test_compose_runs_serve_on_every_interface_port_8000() -> None:
    service = _service()
    command = service["command"]
    assert command[:2] == ["tdx-contention", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert any(str(p).split(":")[-1] == "8000" for p in service["ports"])
    assert "TDX_CONTENTION_TOKEN" in service["environment"]  # serve insists on one


def test_compose_keeps_the_data_dir_on_a_named_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = _service()
    data_dir = service["command"][service["command"].index("--data-dir") + 1]
    mounts = [v.split(":") for v in service["volumes"]]
    assert [name for name, target in mounts if target == data_dir]
    name = next(name for name, target in mounts if target == data_dir)
    assert name in compose["volumes"]  # named, not a host path


def test_compose_health_check_asks_healthz() -> None:
    check = _service()["healthcheck"]
    assert "/healthz" in " ".join(check["test"])
    assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_dockerfile_matches() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    assert "EXPOSE 8000" in text and 'VOLUME ["/data"]' in text
    assert "/healthz" in text and '"--host", "0.0.0.0"' in text
    for path in ("engine", "app", "static", "pyproject.toml"):
        assert path in text
