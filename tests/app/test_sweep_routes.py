"""The sweep routes: submit, follow, files, cancel, token, restart (CONTRACT.md "Sweeps")."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.settings import Settings
from tests.app.conftest import make_client
from tests.app.sweep_helpers import SMALL

LONG = """\
scenario = "zero-step"
duration_us = 3000
seeds = 20
[axes]
vcpus = [32, 48]
retry_max = [0, 1, 2, 4, 8, 16]
"""


def _wait(client: TestClient, sweep_id: str, states: tuple[str, ...],
          timeout_s: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get(f"/api/sweeps/{sweep_id}").json()
        if status["state"] in states:
            return status
        assert time.monotonic() < end, f"sweep stayed {status['state']}"
        time.sleep(0.1)


def test_submit_run_and_fetch_the_files(client: TestClient) -> None:
    """POST a sweep file: 202 with its id; it runs in the background to `done`; its
    status carries the summary rows and answers; its three files are served."""
    answer = client.post("/api/sweeps", content=SMALL, headers={"Content-Type": "application/toml"})
    assert answer.status_code == 202
    sweep_id = answer.json()["sweep_id"]
    listed = client.get("/api/sweeps").json()
    assert [s["sweep_id"] for s in listed] == [sweep_id]
    assert listed[0]["state"] in ("queued", "running", "done")
    status = _wait(client, sweep_id, ("done", "failed"))
    assert status["state"] == "done" and status["done"] == status["total"] == 16
    assert len(status["summary"]) == 8
    assert {row["policy"] for row in status["summary"]} == {"bounded", "upstream"}
    assert {(a["vcpus"], a["policy"]) for a in status["answers"]} == {
        (4, "bounded"), (4, "upstream"), (8, "bounded"), (8, "upstream")}
    assert status["curves"]["x_axis"] == "retry_max" and len(status["curves"]["lines"]) == 4
    summary = client.get(f"/api/sweeps/{sweep_id}/summary.csv")
    assert summary.status_code == 200 and summary.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(summary.text)))) == 8
    points = client.get(f"/api/sweeps/{sweep_id}/points.csv").text
    assert points.count("\n") == 17
    report = client.get(f"/api/sweeps/{sweep_id}/report.html")
    assert report.status_code == 200 and "give-up rate" in report.text.lower()
    assert client.get(f"/api/sweeps/{sweep_id}/sweep.toml").status_code == 404
    assert client.get("/api/sweeps/nope").status_code == 404


def test_bad_sweep_is_422_naming_each_key_and_nothing_is_kept(client: TestClient) -> None:
    body = 'scenario = "nope"\nduration_us = 0\n[axes]\nretry_max = [5000]\n'
    answer = client.post("/api/sweeps", content=body)
    assert answer.status_code == 422
    fields = {p["field"] for p in answer.json()["detail"]}
    assert {"scenario", "duration_us", "axes.retry_max"} <= fields
    uploaded = client.post("/api/sweeps", content='scenario_file = "/etc/passwd"\nduration_us = 5\n')
    assert uploaded.status_code == 422 and uploaded.json()["detail"][0]["field"] == "scenario_file"
    huge = client.post("/api/sweeps", content='scenario = "zero-step"\nduration_us = 10000000\n'
                       'seeds = 1000\n[axes]\nvcpus = [512, 511]\n')
    assert huge.status_code == 422 and huge.json()["detail"][0]["field"] == "axes"
    assert "h of CPU" in huge.json()["message"]
    costly = client.post("/api/sweeps", content='scenario = "conversion"\nduration_us = 100\n'
                         '[axes]\n"workload.zap_interval_ns" = [0]\n')
    assert costly.status_code == 422
    assert costly.json()["detail"][0]["field"] == "axes.workload.zap_interval_ns"
    assert client.post("/api/sweeps", content=b"\xff\xfe").status_code == 422
    assert client.get("/api/sweeps").json() == []


def test_cancel_keeps_the_finished_rows_and_survives_a_restart(settings: Settings) -> None:
    """DELETE stops a running sweep: `cancelled`, its finished rows kept; after a restart
    the sweep is still listed with its state and files."""
    with make_client(settings) as client:
        sweep_id = client.post("/api/sweeps", content=LONG).json()["sweep_id"]
        end = time.monotonic() + 60
        while client.get(f"/api/sweeps/{sweep_id}").json()["done"] < 2:
            assert time.monotonic() < end
            time.sleep(0.1)
        cancelled = client.delete(f"/api/sweeps/{sweep_id}")
        assert cancelled.status_code == 200
        status = _wait(client, sweep_id, ("cancelled",), 30)
        assert 2 <= status["done"] < status["total"] == 240
        assert client.delete("/api/sweeps/nope").status_code == 404
    with make_client(settings) as client:
        again = client.get(f"/api/sweeps/{sweep_id}").json()
        assert again["state"] == "cancelled" and again["done"] == status["done"]
        assert client.get(f"/api/sweeps/{sweep_id}/points.csv").text.count("\n") == status["done"] + 1


def test_a_sweep_running_at_shutdown_resumes_at_start(settings: Settings) -> None:
    """The server stops mid-sweep; the next start queues it again and it completes from
    the rows it had, without a duplicate."""
    text = LONG.replace("seeds = 20", "seeds = 2").replace("duration_us = 3000", "duration_us = 1500")
    with make_client(settings) as client:
        sweep_id = client.post("/api/sweeps", content=text).json()["sweep_id"]
        end = time.monotonic() + 60
        while client.get(f"/api/sweeps/{sweep_id}").json()["done"] < 2:
            assert time.monotonic() < end
            time.sleep(0.1)
    with make_client(settings) as client:
        status = _wait(client, sweep_id, ("done", "failed"), 90)
        assert status["state"] == "done" and status["done"] == 24
        lines = client.get(f"/api/sweeps/{sweep_id}/points.csv").text.splitlines()[1:]
        keys = [tuple(line.split(",")[:3]) for line in lines]
        assert len(keys) == 24 and len(set(keys)) == 24


def test_changes_need_the_token(tmp_path: Path) -> None:
    """With a token set, POST and DELETE need it; reading does not."""
    settings = Settings(data_dir=tmp_path / "data", token="s3cret")
    with make_client(settings) as client:
        assert client.post("/api/sweeps", content=SMALL).status_code == 401
        assert client.get("/api/sweeps").status_code == 200
        ok = client.post("/api/sweeps", content=SMALL,
                         headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 202
        sweep_id = ok.json()["sweep_id"]
        assert client.delete(f"/api/sweeps/{sweep_id}").status_code == 401
        assert client.delete(f"/api/sweeps/{sweep_id}",
                             headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_builtins_are_listed_with_their_text(client: TestClient) -> None:
    builtins = client.get("/api/sweep-builtins").json()
    assert [b["name"] for b in builtins] == ["retry-budget"]
    assert 'name = "retry-budget"' in builtins[0]["text"]
