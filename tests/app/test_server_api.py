"""REST routes of the contract, good and bad input (in-process, TestClient)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from server_helpers import jsonl, run_for, wait_for

from engine.config import FIELDS

DEFAULTS = {"scenario": "zero-step", "policy": "bounded", "retry_max": 16, "zero_step": True,
            "vcpus": 8, "module_version": "1.5", "seed": 1}


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}


def test_config_starts_at_the_contract_defaults(client: TestClient) -> None:
    config = client.get("/api/config").json()
    assert set(config) == set(FIELDS)
    assert {k: config[k] for k in DEFAULTS} == DEFAULTS


def test_server_starts_paused(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert stats["state"] == "paused"
    assert stats["sim_ns"] == 0


def test_patch_live_field_returns_the_whole_new_config(client: TestClient) -> None:
    run_id = client.get("/api/stats").json()["run_id"]
    reply = client.patch("/api/config", json={"retry_max": 4, "zero_step": False})
    assert reply.status_code == 200
    assert reply.json() == {**client.get("/api/config").json()}
    assert reply.json()["retry_max"] == 4 and reply.json()["zero_step"] is False
    assert client.get("/api/stats").json()["run_id"] == run_id  # live: same run


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"retry_max": 2000}, "retry_max", "0 to 1024"),
    ({"retry_max": -1}, "retry_max", "0 to 1024"),
    ({"retry_max": "16"}, "retry_max", "integer"),
    ({"retry_max": True}, "retry_max", "integer"),
    ({"vcpus": 0}, "vcpus", "1 to 512"),
    ({"vcpus": 513}, "vcpus", "1 to 512"),
    ({"zero_step": "on"}, "zero_step", "true or false"),
    ({"policy": "yolo"}, "policy", "unknown policy"),
    ({"scenario": "nope"}, "scenario", "unknown scenario"),
    ({"module_version": "2.0"}, "module_version", "1.0"),
    ({"seed": -3}, "seed", ">= 0"),
    ({"speed": 0}, "speed", "> 0"),
    ({"speed": "fast"}, "speed", "number"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_patch_bad_field_is_422_naming_it(client: TestClient, body: dict[str, object],
                                          field: str, words: str) -> None:
    before = client.get("/api/config").json()
    reply = client.patch("/api/config", json=body)
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert [d["field"] for d in detail] == [field]
    assert words in detail[0]["message"]
    assert reply.json()["message"].startswith(f"{field}: ")
    assert client.get("/api/config").json() == before


def test_patch_with_good_and_bad_fields_changes_nothing(client: TestClient) -> None:
    before = client.get("/api/config").json()
    reply = client.patch("/api/config", json={"retry_max": 3, "policy": "x", "vcpus": 9999})
    assert reply.status_code == 422
    assert {d["field"] for d in reply.json()["detail"]} == {"policy", "vcpus"}
    assert client.get("/api/config").json() == before


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"retry_max"'])
def test_patch_body_must_be_a_json_object(client: TestClient, body: bytes) -> None:
    reply = client.patch("/api/config", content=body,
                         headers={"content-type": "application/json"})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == "body"


def test_patch_other_field_starts_a_new_run_keeping_the_state(client: TestClient) -> None:
    first = client.get("/api/stats").json()["run_id"]
    reply = client.patch("/api/config", json={"vcpus": 4})
    assert reply.status_code == 200 and reply.json()["vcpus"] == 4
    stats = client.get("/api/stats").json()
    assert stats["run_id"] != first and stats["state"] == "paused"
    client.post("/api/run/start")
    second = stats["run_id"]
    client.patch("/api/config", json={"seed": 7})
    stats = client.get("/api/stats").json()
    assert stats["run_id"] != second and stats["state"] == "running"
    assert stats["config"]["seed"] == 7


def test_start_pause_reset(client: TestClient) -> None:
    run_id = client.get("/api/stats").json()["run_id"]
    assert client.post("/api/run/start").json() == {"state": "running", "run_id": run_id}
    assert client.post("/api/run/start").json()["state"] == "running"  # idempotent
    wait_for(lambda: client.get("/api/stats").json()["sim_ns"] > 0)
    assert client.post("/api/run/pause").json() == {"state": "paused", "run_id": run_id}
    frozen = client.get("/api/stats").json()["sim_ns"]
    assert client.get("/api/stats").json()["sim_ns"] == frozen
    client.patch("/api/config", json={"retry_max": 5})
    reset = client.post("/api/run/reset").json()
    assert reset["state"] == "paused" and reset["run_id"] != run_id
    stats = client.get("/api/stats").json()
    assert stats["sim_ns"] == 0 and stats["config"]["retry_max"] == 5


def test_stats_is_the_contract_summary(client: TestClient) -> None:
    stats = run_for(client, 300_000)
    for key in ("config", "sim_ns", "events", "attempts", "busy", "retries", "giveups",
                "zero_step_activations", "busy_by_operand", "by_leaf", "run_id", "state",
                "lagging"):
        assert key in stats
    assert stats["attempts"] > 0 and stats["lagging"] is False
    assert sum(stats["busy_by_operand"].values()) == stats["busy"]


def test_export_counts_equal_stats(client: TestClient) -> None:
    stats = run_for(client, 500_000)
    records = jsonl(client.get("/api/export?format=jsonl").text)
    assert len(records) == stats["events"]
    assert [r["seq"] for r in records] == list(range(len(records)))
    calls = [r for r in records if r["kind"] in ("seamcall", "tdcall")]
    assert len(calls) == stats["attempts"]
    assert sum(r["outcome"] in ("busy", "giveup") for r in calls) == stats["busy"]
    assert sum(r["attempt"] > 1 for r in calls) == stats["retries"]
    assert sum(r["kind"] == "zero_step" for r in records) == stats["zero_step_activations"]


def test_export_formats_and_file_names(client: TestClient) -> None:
    stats = run_for(client, 200_000)
    run_id = stats["run_id"]
    for fmt, ext, media in (("jsonl", "jsonl", "application/x-ndjson"),
                            ("csv", "csv", "text/csv"), ("chrome", "json", "application/json")):
        reply = client.get(f"/api/export?format={fmt}")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith(media)
        assert reply.headers["content-disposition"] == (
            f'attachment; filename="tdx-contention-{run_id}.{ext}"')
        same = client.get(f"/api/runs/{run_id}/export?format={fmt}")
        assert same.content == reply.content
    rows = list(csv.DictReader(io.StringIO(client.get("/api/export?format=csv").text)))
    assert len(rows) == stats["events"]
    trace = json.loads(client.get("/api/export?format=chrome").text)
    assert any(e["ph"] == "X" for e in trace["traceEvents"])


def test_export_default_format_is_jsonl(client: TestClient) -> None:
    assert client.get("/api/export").headers["content-type"].startswith("application/x-ndjson")


def test_export_unknown_format_is_400_listing_the_valid_ones(client: TestClient) -> None:
    for url in ("/api/export?format=xml", "/api/runs/whatever/export?format=xml"):
        reply = client.get(url)
        assert reply.status_code == 400
        assert "jsonl, csv, chrome" in reply.json()["detail"]


def test_export_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/api/runs/no-such-run/export?format=jsonl").status_code == 404


def test_runs_newest_first_with_the_current_one(client: TestClient) -> None:
    first = client.get("/api/stats").json()["run_id"]
    client.patch("/api/config", json={"seed": 2})  # a new TD: a new run
    second = client.get("/api/stats").json()["run_id"]
    runs = client.get("/api/runs").json()
    assert [r["run_id"] for r in runs] == [second, first]
    assert runs[0]["current"] is True and runs[1]["current"] is False
    for run in runs:
        assert {"run_id", "config", "summary", "created", "end_ns", "scenario"} <= set(run)


def test_scenarios_listed(client: TestClient) -> None:
    names = [s["name"] for s in client.get("/api/scenarios").json()]
    assert {"boot", "conversion", "zero-step"} <= set(names)
    assert all(s["description"] for s in client.get("/api/scenarios").json())


CUSTOM = """
name = "tiny-boot"
description = "a small boot storm posted over HTTP"
duration_us = 1000

[workload]
run_mean_ns = 20000
"""


def test_post_scenario_then_choose_it(client: TestClient) -> None:
    reply = client.post("/api/scenarios", content=CUSTOM)
    assert reply.status_code == 201
    assert reply.json()["name"] == "tiny-boot"
    assert "tiny-boot" in [s["name"] for s in client.get("/api/scenarios").json()]
    assert client.patch("/api/config", json={"scenario": "tiny-boot"}).status_code == 200
    assert client.get("/api/stats").json()["config"]["scenario"] == "tiny-boot"


def test_choosing_a_scenario_applies_its_td_defaults(client: TestClient) -> None:
    """A posted scenario's [td] table sets the new run's TD; fields in the body win."""
    text = CUSTOM.replace('duration_us = 1000\n', 'duration_us = 1000\n\n[td]\nvcpus = 2\n'
                          'module_version = "1.0"\n').replace("tiny-boot", "tiny-td")
    assert client.post("/api/scenarios", content=text).status_code == 201
    config = client.patch("/api/config", json={"scenario": "tiny-td"}).json()
    assert (config["vcpus"], config["module_version"]) == (2, "1.0")
    config = client.patch("/api/config", json={"scenario": "boot"}).json()
    config = client.patch("/api/config", json={"scenario": "tiny-td", "vcpus": 3}).json()
    assert (config["vcpus"], config["module_version"]) == (3, "1.0")
    assert client.get("/api/stats").json()["config"]["vcpus"] == 3


@pytest.mark.parametrize(("text", "field"), [
    ("name = [", "body"),
    ('name = "x"\ndescription = "d"\nduration_us = -5\n', "duration_us"),
    ('name = "x"\ndescription = "d"\ncolour = 1\n', "colour"),
    ('name = "boot"\ndescription = "d"\n', "name"),
])
def test_post_bad_scenario_is_422_naming_the_key(client: TestClient, text: str,
                                                 field: str) -> None:
    reply = client.post("/api/scenarios", content=text)
    assert reply.status_code == 422
    body = reply.json()
    if field != "body":
        assert field in [d["field"] for d in body["detail"]]
    assert body["message"]


def test_metrics(client: TestClient) -> None:
    run_for(client, 300_000)
    client.patch("/api/config", json={"retry_max": 3, "zero_step": False})
    text = client.get("/metrics").text
    for name in ('tdx_contention_seamcall_attempts_total{leaf="TDH.VP.ENTER",run="main"}',
                 'tdx_contention_tdcall_attempts_total{leaf="TDG.MEM.PAGE.ACCEPT",run="main"}',
                 'tdx_contention_busy_total{leaf="TDH.VP.ENTER",operand="SEPT_TREE",run="main"}',
                 "tdx_contention_retries_total", "tdx_contention_giveups_total",
                 "tdx_contention_zero_step_activations_total",
                 "tdx_contention_simulated_seconds_total",
                 'tdx_contention_attempts_per_call_bucket{le="17.0",run="main"}',
                 "tdx_contention_attempts_per_call_count"):
        assert name in text
    assert 'tdx_contention_retry_max{run="main"} 3.0' in text
    assert 'tdx_contention_zero_step_enabled{run="main"} 0.0' in text
    import engine.sim
    build = "compiled" if engine.sim.__file__.endswith(".so") else "pure"
    assert f'tdx_contention_engine_info{{build="{build}"}} 1.0' in text
    line = next(x for x in text.splitlines()
                if x.startswith('tdx_contention_seamcall_attempts_total{leaf="TDH.VP.ENTER"'))
    assert float(line.split()[-1]) > 0
