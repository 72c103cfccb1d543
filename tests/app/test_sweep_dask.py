"""Dask: a real scheduler and two workers on loopback give the local pool's rows."""

from __future__ import annotations

import time
from pathlib import Path

from tests.app.dask_cluster import dask_cluster
from tests.app.sweep_helpers import SMALL, cli, sorted_lines, write

GRID = SMALL.replace('retry_max = [0, 4]', 'retry_max = [0, 4]\n"timing.vp_entry_ns" = [2000, 3000]')


def test_dask_cluster_gives_the_local_pools_points_csv(tmp_path: Path) -> None:
    """`--scheduler tcp://...` runs every point on the cluster's workers, and points.csv
    (sorted by point and seed) is byte for byte the local pool's."""
    sweep = write(tmp_path / "grid.toml", GRID)
    local = cli("sweep", str(sweep), "--out", str(tmp_path / "local"), "--workers", "2",
                "--no-png")
    assert local.returncode == 0, local.stderr
    started = time.monotonic()
    with dask_cluster(2) as address:
        remote = cli("sweep", str(sweep), "--out", str(tmp_path / "dask"), "--scheduler",
                     address, "--no-png")
    assert remote.returncode == 0, remote.stderr
    assert time.monotonic() - started < 60
    ours = sorted_lines(tmp_path / "local" / "points.csv")
    theirs = sorted_lines(tmp_path / "dask" / "points.csv")
    assert len(ours) == 1 + 16 * 2
    assert theirs == ours
    assert '"distributed"' in (tmp_path / "dask" / "sweep.json").read_text()


def test_unreachable_scheduler_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """No scheduler at the address: a clear error within the connect timeout."""
    from tests.app.live_server import free_port

    sweep = write(tmp_path / "grid.toml", SMALL)
    done = cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--scheduler",
               f"tcp://127.0.0.1:{free_port()}", "--no-png", timeout=60)
    assert done.returncode == 1
    assert "scheduler" in done.stderr.lower() or "timed out" in done.stderr.lower()
