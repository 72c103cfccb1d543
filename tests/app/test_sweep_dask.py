"""Dask: a real scheduler and two workers on loopback give the local pool's rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import Settings
from tests.app.conftest import make_client
from tests.app.dask_cluster import dask_cluster
from tests.app.live_server import free_port
from tests.app.sweep_helpers import SMALL, cli, sorted_lines, write

GRID = SMALL.replace('retry_max = [0, 4]', 'retry_max = [0, 4]\n"timing.vp_entry_ns" = [2000, 3000]')


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with dask_cluster(2) as address:
        yield address


@pytest.fixture(scope="module")
def local_points(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("local")
    done = cli("sweep", str(write(tmp / "grid.toml", GRID)), "--out", str(tmp / "out"),
               "--workers", "2", "--no-png")
    assert done.returncode == 0, done.stderr
    return sorted_lines(tmp / "out" / "points.csv")


def test_dask_cluster_gives_the_local_pools_points_csv(tmp_path: Path, cluster: str,
                                                       local_points: list[str]) -> None:
    """`--scheduler tcp://...` runs every point on the cluster's workers, and points.csv
    (sorted by point and seed) is byte for byte the local pool's."""
    sweep = write(tmp_path / "grid.toml", GRID)
    remote = cli("sweep", str(sweep), "--out", str(tmp_path / "dask"), "--scheduler", cluster,
                 "--no-png")
    assert remote.returncode == 0, remote.stderr
    assert len(local_points) == 1 + 16 * 2
    assert sorted_lines(tmp_path / "dask" / "points.csv") == local_points
    assert '"distributed"' in (tmp_path / "dask" / "sweep.json").read_text()


def test_server_with_dask_scheduler_sends_sweeps_to_the_cluster(tmp_path: Path, cluster: str,
                                                                local_points: list[str]) -> None:
    """`serve --dask-scheduler`: a sweep posted to the server runs on the cluster and gives
    the same rows."""
    with make_client(Settings(data_dir=tmp_path / "data", dask_scheduler=cluster)) as client:
        sweep_id = client.post("/api/sweeps", content=GRID).json()["sweep_id"]
        end = time.monotonic() + 90
        while (state := client.get(f"/api/sweeps/{sweep_id}").json()["state"]) != "done":
            assert state in ("queued", "running") and time.monotonic() < end, state
            time.sleep(0.2)
        points = client.get(f"/api/sweeps/{sweep_id}/points.csv").text
    header, *body = points.splitlines()
    assert [header, *sorted(body)] == local_points
    log = (tmp_path / "data" / "sweeps" / sweep_id / "log.txt").read_text()
    assert "rows 32/32" in log


def test_unreachable_scheduler_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """No scheduler at the address: a clear error within the connect timeout, and no
    output directory."""
    sweep = write(tmp_path / "grid.toml", SMALL)
    done = cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--scheduler",
               f"tcp://127.0.0.1:{free_port()}", "--no-png", timeout=60)
    assert done.returncode == 1
    assert "tdx-contention sweep: error: no Dask scheduler answers at tcp://127.0.0.1:" in done.stderr
    assert not (tmp_path / "out").exists()
