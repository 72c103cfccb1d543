"""Faults of the runner and of the run history: a failure pauses the run and says why,
nothing already stored is lost, and a bad data dir is named at start-up."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_client
from fastapi.testclient import TestClient
from server_helpers import wait_for

from app.cli import main
from app.settings import Settings
from app.store import RunRecord, Store, StoreError


def _stats(client: TestClient) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/api/stats").json()
    return answer


def test_an_engine_failure_pauses_the_run_and_says_why(client: TestClient) -> None:
    runner = client.app.state.runner  # type: ignore[attr-defined]

    def broken(t_ns: int) -> list[Any]:
        raise RuntimeError("boom in the engine")
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        runner.run.sim.run_until = broken
        client.post("/api/run/start").raise_for_status()
        wait_for(lambda: _stats(client)["state"] == "paused")
        while (message := ws.receive_json())["type"] != "state" or not message["error"]:
            pass
        assert "boom in the engine" in message["error"]
    assert "boom in the engine" in _stats(client)["error"]
    assert client.get("/healthz").status_code == 200  # the loop itself kept going


def test_a_failed_loop_restarts_and_healthz_says_503_meanwhile(settings: Settings) -> None:
    slow_restart = Settings(data_dir=settings.data_dir, restart_delay_s=1.5)
    with make_client(slow_restart) as client:
        runner = client.app.state.runner  # type: ignore[attr-defined]
        real = runner._begin_tick
        calls = []

        def overflow() -> None:
            calls.append(1)
            if len(calls) == 2:  # the loop's first tick, after the command's own
                raise OverflowError("cannot convert float infinity to integer")
            real()
        runner._begin_tick = overflow
        client.post("/api/run/start").raise_for_status()
        wait_for(lambda: client.get("/healthz").status_code == 503, 3)
        assert "OverflowError" in client.get("/healthz").json()["detail"]
        assert client.get("/api/stats").status_code == 503  # refused at once, not hung
        wait_for(lambda: client.get("/healthz").status_code == 200, 5)
        stats = _stats(client)
        assert stats["state"] == "paused" and "OverflowError" in stats["error"]
        assert client.post("/api/run/start").json()["state"] == "running"
        assert _stats(client)["error"] is None


def test_a_runner_that_does_not_answer_gives_503(settings: Settings) -> None:
    impatient = Settings(data_dir=settings.data_dir, call_timeout_s=0.3)
    with make_client(impatient) as client:
        runner = client.app.state.runner  # type: ignore[attr-defined]
        runner._commands.put((lambda: time.sleep(1.0), concurrent.futures.Future()))
        answer = client.get("/api/stats")
        assert answer.status_code == 503 and "did not answer within 0.3 s" in answer.json()["detail"]
        wait_for(lambda: client.get("/api/stats").status_code == 200)


def test_a_storage_fault_pauses_the_run_and_refuses_changes(client: TestClient) -> None:
    runner = client.app.state.runner  # type: ignore[attr-defined]
    client.post("/api/run/start").raise_for_status()
    wait_for(lambda: _stats(client)["sim_ns"] > 0)
    before = client.get("/api/config").json()

    def full(record: RunRecord) -> None:
        raise StoreError("data/runs.sqlite3: cannot store run: database or disk is full")
    runner.store.save_run = full
    wait_for(lambda: _stats(client)["state"] == "paused")
    assert "disk is full" in _stats(client)["error"]
    answer = client.patch("/api/config", json={"retry_max": 3})
    assert answer.status_code == 503 and "disk is full" in answer.json()["detail"]
    assert client.get("/api/config").json() == before
    assert client.post("/api/run/start").status_code == 503


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def test_a_full_disk_pauses_the_run_and_loses_nothing_stored(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        settings = Settings(data_dir=disk / "data")
        with make_client(settings) as client:
            client.patch("/api/config", json={"retry_max": 5}).raise_for_status()
            client.post("/api/run/start").raise_for_status()
            wait_for(lambda: _stats(client)["sim_ns"] > 0)
            kept = client.get("/api/runs").json()
            with open(disk / "filler", "wb") as filler:  # take the rest of the disk
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError:
                    pass
            refused = None
            for _ in range(200):  # new runs grow the database until a write fails
                answer = client.post("/api/run/reset")
                if answer.status_code == 503:
                    refused = answer
                    break
            assert refused is not None and "full" in refused.json()["detail"]
            stats = _stats(client)
            assert stats["state"] == "paused" and "full" in stats["error"]
        (disk / "filler").unlink()
        with make_client(settings) as client:
            runs = {r["run_id"]: r for r in client.get("/api/runs").json()}
            for old in kept:
                assert old["run_id"] in runs and runs[old["run_id"]]["controls"] == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_bad_row_is_skipped_with_a_warning_naming_it(settings: Settings,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with make_client(settings) as client:
        good = client.get("/api/runs").json()[0]["run_id"]
    db = sqlite3.connect(settings.data_dir / "runs.sqlite3")
    db.execute("INSERT INTO runs (run_id, created, scenario, scenario_toml, config, timeline, "
               "end_ns, summary) VALUES ('broken-run', 2e9, 'boot', NULL, '{not json', '[]', "
               "0, '{}')")
    db.commit()
    db.close()
    with make_client(settings) as client:
        answer = client.get("/api/runs")
        assert answer.status_code == 200
        assert good in [r["run_id"] for r in answer.json()]
        assert "broken-run" not in [r["run_id"] for r in answer.json()]
    assert any("broken-run" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content", [b"", b"this is not a database at all" * 100])
def test_an_empty_or_corrupt_history_is_named_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    (tmp_path / "runs.sqlite3").write_bytes(content)
    with pytest.raises(StoreError, match="runs.sqlite3"):
        Store(tmp_path)
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "runs.sqlite3") in err and "Traceback" not in err
    assert (tmp_path / "runs.sqlite3").read_bytes() == content  # left as it was


def test_a_data_dir_that_is_a_file_exits_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["serve", "--data-dir", str(tmp_path / "file"), "--port", "0"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_one_store_per_data_dir(tmp_path: Path) -> None:
    first = Store(tmp_path)
    try:
        with pytest.raises(StoreError, match="another server uses this data dir"):
            Store(tmp_path)
    finally:
        first.close()
    Store(tmp_path).close()  # free again once the first is closed


def test_a_wedged_engine_step_is_503_not_a_hang_and_shutdown_still_ends(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine step that never returns (what zap_interval_ns = 0 did): routes answer
    503 within the call timeout, /healthz says 503, and the server still shuts down."""
    monkeypatch.setattr("app.supervise.STALL_S", 0.5)
    impatient = Settings(data_dir=settings.data_dir, call_timeout_s=0.5)
    release = threading.Event()
    client = make_client(impatient)
    with client:
        runner = client.app.state.runner  # type: ignore[attr-defined]

        def wedged(t_ns: int) -> list[Any]:
            release.wait(60)
            return []
        runner.run.sim.run_until = wedged
        client.post("/api/run/start").raise_for_status()
        wait_for(lambda: client.get("/healthz").status_code == 503, 5)
        began = time.monotonic()
        answer = client.get("/api/stats")
        assert answer.status_code == 503 and "engine step" in answer.json()["detail"]
        assert time.monotonic() - began < 2
        shutdown_began = time.monotonic()
    assert time.monotonic() - shutdown_began < 8  # runner.stop gave up on the thread
    release.set()
