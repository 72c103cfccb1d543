"""Run history across restarts: the same runs, byte-identical exports, posted scenarios."""

from __future__ import annotations

from pathlib import Path

from conftest import make_client
from server_helpers import run_for

from app.settings import Settings
from app.store import RunRecord, Store

CUSTOM = """
name = "posted"
description = "a scenario posted over HTTP"

[workload]
run_mean_ns = 25000
"""


def _exports(client, run_id: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {fmt: client.get(f"/api/runs/{run_id}/export?format={fmt}").content
            for fmt in ("jsonl", "csv", "chrome")}


def test_restart_keeps_runs_and_their_exact_exports(settings: Settings) -> None:
    with make_client(settings) as client:
        first = run_for(client, 300_000)["run_id"]
        client.post("/api/run/start")
        client.patch("/api/config", json={"retry_max": 1, "zero_step": False})
        client.patch("/api/config", json={"speed": 2500})
        run_for(client, 800_000)  # controls are handed out once earlier records close
        assert client.post("/api/scenarios", content=CUSTOM).status_code == 201
        client.patch("/api/config", json={"scenario": "posted"})
        posted = run_for(client, 200_000)["run_id"]
        runs_before = client.get("/api/runs").json()
        exports_before = {r["run_id"]: _exports(client, r["run_id"]) for r in runs_before}
    assert first in exports_before and posted in exports_before
    assert b'"kind":"control"' in exports_before[first]["jsonl"]

    with make_client(settings) as client:
        runs_after = client.get("/api/runs").json()
        assert [r["run_id"] for r in runs_after[1:]] == [r["run_id"] for r in runs_before]
        for before, after in zip(runs_before, runs_after[1:], strict=True):
            assert after["summary"] == before["summary"]
            assert after["config"] == before["config"]
            assert _exports(client, before["run_id"]) == exports_before[before["run_id"]]
        assert "posted" in [s["name"] for s in client.get("/api/scenarios").json()]


def test_a_replaced_scenario_does_not_change_old_runs(settings: Settings) -> None:
    with make_client(settings) as client:
        client.post("/api/scenarios", content=CUSTOM)
        client.patch("/api/config", json={"scenario": "posted"})
        old = run_for(client, 200_000)["run_id"]
        before = client.get(f"/api/runs/{old}/export").content
        client.post("/api/scenarios", content=CUSTOM.replace("25000", "5000"))
        client.post("/api/run/reset")
        assert client.get(f"/api/runs/{old}/export").content == before


def test_store_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = RunRecord(run_id="r1", created=1.0, scenario="boot", config={"seed": 1},
                       timeline=[(5, {"speed": 2.0, "retry_max": 3})], end_ns=10,
                       summary={"events": 3})
    store.save_run(record)
    record.end_ns = 20
    store.save_run(record)
    store.close()
    reopened = Store(tmp_path)
    again = reopened.run("r1")
    reopened.close()
    assert again == record


def test_a_restarted_server_comes_back_with_the_config_the_user_left(settings: Settings) -> None:
    """CONTRACT Safety: a live change is durable once its PATCH answers 200. After a
    restart the current run has the last run's config with its live changes, paused; a
    config that no longer opens (its posted scenario was deleted) falls back to defaults."""
    with make_client(settings) as client:
        client.patch("/api/config", json={"vcpus": 4})
        client.patch("/api/config", json={"retry_max": 5, "policy": "upstream", "zero_step": False})
    with make_client(settings) as client:
        config = client.get("/api/config").json()
        assert (config["vcpus"], config["retry_max"], config["policy"], config["zero_step"]) == (
            4, 5, "upstream", False)
        assert client.get("/api/stats").json()["sim_ns"] == 0
        assert client.post("/api/scenarios", content=CUSTOM).status_code == 201
        client.patch("/api/config", json={"scenario": "posted"})
    store = Store(settings.data_dir)
    store.delete_scenario("posted")
    store.close()
    with make_client(settings) as client:
        assert client.get("/api/config").json()["scenario"] == "zero-step"
