"""docker-compose.yml's `dask` profile: a scheduler, workers, a server sending sweeps there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[2]


def _profile(name: str) -> dict[str, dict[str, Any]]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {k: v for k, v in services.items() if name in v.get("profiles", [])}


def test_dask_profile_has_scheduler_workers_and_a_server_using_them() -> None:
    services = _profile("dask")
    scheduler = next(s for s in services.values() if s["command"][:2] == ["dask", "scheduler"])
    port = scheduler["command"][scheduler["command"].index("--port") + 1]
    name = next(k for k, s in services.items() if s is scheduler)
    address = f"tcp://{name}:{port}"
    workers = [s for s in services.values() if s["command"][:2] == ["dask", "worker"]]
    assert workers and all(w["command"][2] == address for w in workers)
    assert sum(w.get("deploy", {}).get("replicas", 1) for w in workers) >= 2
    servers = [s for s in services.values() if s["command"][:2] == ["tdx-contention", "serve"]]
    assert len(servers) == 1
    command = servers[0]["command"]
    assert command[command.index("--dask-scheduler") + 1] == address
    ports = [str(p).split(":")[0] for p in servers[0]["ports"]]
    assert "8000" not in ports  # beside the default service, not in its place


def test_the_image_installs_the_dask_extra() -> None:
    assert "[dask]" in (ROOT / "Dockerfile").read_text()
