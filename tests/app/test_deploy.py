"""deploy/ and the compose `observability` profile, checked statically (no images here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to the compose file) of the bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_observability_profile_runs_prometheus_and_grafana() -> None:
    """Prometheus and Grafana are in the `observability` profile only (a plain `docker
    compose up` still starts the dashboard alone), and the server is in no profile."""
    services = _compose()["services"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]
    assert "profiles" not in services["tdx-contention"]
    assert "tdx-contention" in services["prometheus"]["depends_on"]


def test_prometheus_scrapes_the_server_with_the_shipped_config() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = _mounts(prometheus)
    config_path = next(c.split("=", 1)[1] for c in prometheus["command"]
                       if c.startswith("--config.file="))
    host_file = ROOT / mounts[config_path]
    assert host_file.is_file()
    config = yaml.safe_load(host_file.read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["tdx-contention:8000"]
    # The server answers that Host: the scrape would get 400 otherwise.
    from app.security import HostPolicy

    command = _compose()["services"]["tdx-contention"]["command"]
    allowed = [command[i + 1] for i, a in enumerate(command) if a == "--allow-host"]
    policy = HostPolicy(command[command.index("--host") + 1], allowed)
    assert policy.allows("tdx-contention:8000")


def test_grafana_is_provisioned_with_the_dashboard_and_datasource() -> None:
    """The provisioning directory and dashboards are mounted where Grafana reads them; the
    datasource's uid is the one every panel names, and its URL is the compose Prometheus."""
    grafana = _compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load(
        (provisioning / "dashboards" / "tdx-contention.yml").read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    host_dir = ROOT / mounts[dashboards_dir]
    dashboard = json.loads((host_dir / "tdx-contention.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
            assert "tdx_contention_" in target["expr"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_leaves_out_git_and_build_but_not_what_the_image_copies() -> None:
    """The build context carries no .git or build/ (nor caches, tests, data), and every
    path the Dockerfile COPYs from the context is still in it."""
    import fnmatch

    patterns = _dockerignore()
    assert ".git" in patterns and "build" in patterns
    copies = [line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    sources = [s for group in copies for s in group]
    assert {"pyproject.toml", "setup.py", "engine", "app", "static"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        hits = [p for p in patterns if not p.startswith("!") and (
            fnmatch.fnmatch(source, p.removeprefix("**/")) or source == p)]
        assert not hits, f"{source} is ignored by {hits}"
