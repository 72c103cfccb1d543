"""Compare live: PUT/GET/DELETE /api/compare, the twin in frames, stats, runs and exports."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.config import Config
from engine.run import records
from engine.summary import Tally
from tests.app.server_helpers import jsonl, wait_for

COUNTS = ("events", "attempts", "busy", "retries", "giveups", "zero_step_activations",
          "busy_by_operand", "by_leaf")


def replayed(config: dict[str, Any], timeline: list[tuple[int, dict[str, Any]]],
             end_ns: int) -> dict[str, Any]:
    """The counts of a run started with `config` and `timeline`, up to `end_ns`."""
    tally = Tally()
    tally.add(records(Config(**config), None, end_ns, timeline=timeline or None, finish=False))
    return tally.counts()


def sim_reaches(client: TestClient, ns: int) -> bool:
    return bool(client.get("/api/stats").json()["sim_ns"] >= ns)


def test_compare_is_off_at_first(client: TestClient) -> None:
    assert client.get("/api/compare").json() == {"on": False, "changes": {}, "run_id": None}
    assert client.get("/api/stats").json()["twin"] is None


def test_twin_counts_equal_a_run_with_its_config_and_the_same_timeline(
        client: TestClient) -> None:
    """The twin takes the run's live changes (but not its pinned field) at the same times;
    replaying its config and that timeline gives exactly its counts."""
    main_id = client.get("/api/stats").json()["run_id"]
    on = client.put("/api/compare", json={"policy": "upstream"}).json()
    assert on["on"] is True and on["changes"] == {"policy": "upstream"}
    twin_id = on["run_id"]
    assert twin_id != main_id and client.get("/api/compare").json()["run_id"] == twin_id
    client.post("/api/run/start")
    wait_for(lambda: sim_reaches(client, 300_000))
    client.patch("/api/config", json={"retry_max": 4})
    client.patch("/api/config", json={"policy": "none"})  # pinned in the twin: not taken
    wait_for(lambda: sim_reaches(client, 600_000))
    client.post("/api/run/pause")
    stats = client.get("/api/stats").json()
    twin = stats["twin"]
    assert twin["run_id"] == twin_id and twin["twin_of"] == main_id
    assert twin["sim_ns"] == stats["sim_ns"], "lockstep: the same simulated time"
    assert twin["config"]["policy"] == "upstream" and twin["config"]["retry_max"] == 4

    runs = {r["run_id"]: r for r in client.get("/api/runs").json()}
    main_timeline = [(c["t_ns"], c["changes"]) for c in runs[main_id]["timeline"]]
    expected = [(t, {k: v for k, v in c.items() if k != "policy"}) for t, c in main_timeline]
    expected = [(t, c) for t, c in expected if c]
    assert [(c["t_ns"], c["changes"]) for c in runs[twin_id]["timeline"]] == expected
    assert runs[twin_id]["twin_of"] == main_id and runs[twin_id]["changed_live"] is True
    config = {**Config().to_dict(), "policy": "upstream"}
    counts = replayed(config, expected, stats["sim_ns"])
    assert {k: twin[k] for k in COUNTS} == {k: counts[k] for k in COUNTS}
    assert twin["busy"] != stats["busy"] or twin["retries"] != stats["retries"]

    # Prometheus counts it under run="twin", beside the run's own series
    assert 'run="twin"' in client.get("/metrics").text

    # exportable like any run: its log is the replay's
    records = jsonl(client.get(f"/api/runs/{twin_id}/export", params={"format": "jsonl"}).text)
    assert sum(r["kind"] in ("seamcall", "tdcall") for r in records) == twin["attempts"]
    assert [r["retry_max"] for r in records if r["kind"] == "control"] == [4]


def test_a_twin_started_mid_run_catches_up_and_replays_the_timeline(client: TestClient) -> None:
    client.post("/api/run/start")
    wait_for(lambda: sim_reaches(client, 200_000))
    client.patch("/api/config", json={"zero_step": False})
    wait_for(lambda: sim_reaches(client, 400_000))
    twin_id = client.put("/api/compare", json={"retry_max": 2}).json()["run_id"]
    wait_for(lambda: not client.get("/api/compare").json()["catching_up"], timeout_s=20)
    wait_for(lambda: sim_reaches(client, 600_000))
    client.post("/api/run/pause")
    stats = client.get("/api/stats").json()
    twin = stats["twin"]
    assert twin["run_id"] == twin_id and twin["sim_ns"] == stats["sim_ns"]
    timeline = [(t, c) for t, c in _timeline(client, twin_id)]
    assert [c for _, c in timeline] == [{"zero_step": False}]
    counts = replayed({**Config().to_dict(), "retry_max": 2}, timeline, stats["sim_ns"])
    assert {k: twin[k] for k in COUNTS} == {k: counts[k] for k in COUNTS}


def _timeline(client: TestClient, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    run = next(r for r in client.get("/api/runs").json() if r["run_id"] == run_id)
    return [(c["t_ns"], c["changes"]) for c in run["timeline"]]


def test_every_frame_carries_the_twin_and_its_bins_add_up(client: TestClient) -> None:
    client.put("/api/compare", json={"retry_max": 0, "zero_step": False})
    frames = []
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["compare"]["on"] is True and hello["bin_ns"] == 100_000
        client.post("/api/run/start")
        while len(frames) < 6:
            message = ws.receive_json()
            if message["type"] == "frame":
                frames.append(message)
        client.post("/api/run/pause")
        while True:  # the pause sends what the last tick simulated
            message = ws.receive_json()
            if message["type"] == "frame":
                frames.append(message)
            elif message["type"] == "state" and message["state"] == "paused":
                break
    stats = client.get("/api/stats").json()
    for f in frames:
        assert f["twin"]["t_ns"] == f["t_ns"] and f["twin"]["changes"]["retry_max"] == 0
        assert set(f["twin"]) >= {"attempts", "retries", "giveups", "busy", "run_id", "bins"}
    for run, summary in ((lambda f: f, stats), (lambda f: f["twin"], stats["twin"])):
        assert sum(run(f)["attempts"] for f in frames) == summary["attempts"]
        assert sum(run(f)["giveups"] for f in frames) == summary["giveups"]
        pieces = [p for f in frames for p in run(f)["bins"]]
        assert sum(sum(p["busy"]) for p in pieces) == summary["busy"]
        assert sum(p["retries"] for p in pieces) == summary["retries"]
        assert max(p["i"] for p in pieces) == (stats["sim_ns"] - 1) // 100_000


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"), ([1], "body"), ({"vcpus": 4}, "vcpus"), ({"speed": 10}, "speed"),
    ({"retry_max": -1}, "retry_max"), ({"policy": "fastest"}, "policy"),
    ({"policy": "upstream", "zero_step": "yes"}, "zero_step"),
])
def test_bad_compare_bodies_are_422_naming_the_field_and_change_nothing(
        client: TestClient, body: Any, field: str) -> None:
    reply = client.put("/api/compare", json=body)
    assert reply.status_code == 422
    assert field in [d["field"] for d in reply.json()["detail"]]
    assert client.get("/api/compare").json()["on"] is False
    assert len(client.get("/api/runs").json()) == 1


def test_delete_stops_the_twin_and_keeps_it_as_a_run(client: TestClient) -> None:
    twin_id = client.put("/api/compare", json={"policy": "vmm_lock"}).json()["run_id"]
    assert client.delete("/api/compare").json() == {"on": False, "changes": {}, "run_id": None}
    assert client.get("/api/stats").json()["twin"] is None
    assert 'run="twin"' not in client.get("/metrics").text
    assert twin_id in [r["run_id"] for r in client.get("/api/runs").json()]


def test_compare_follows_into_a_new_run(client: TestClient) -> None:
    first = client.put("/api/compare", json={"policy": "none"}).json()["run_id"]
    client.patch("/api/config", json={"seed": 5})
    info = client.get("/api/compare").json()
    assert info["on"] is True and info["run_id"] != first
    assert client.get("/api/stats").json()["twin"]["config"]["seed"] == 5


def test_reset_of_an_untouched_run_adds_no_run(client: TestClient) -> None:
    run_id = client.get("/api/stats").json()["run_id"]
    assert client.post("/api/run/reset").json()["run_id"] == run_id
    assert [r["run_id"] for r in client.get("/api/runs").json()] == [run_id]


def test_bin_width_stays_when_speed_changes(client: TestClient) -> None:
    client.post("/api/run/start")
    wait_for(lambda: sim_reaches(client, 100_000))
    before = client.get("/api/stats").json()["bin_ns"]
    client.patch("/api/config", json={"speed": 10_000})
    wait_for(lambda: sim_reaches(client, 2_000_000))
    assert client.get("/api/stats").json()["bin_ns"] == before == 100_000


def test_frames_report_pace(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        client.post("/api/run/start")
        frames = []
        while len(frames) < 12:
            message = ws.receive_json()
            if message["type"] == "frame":
                frames.append(message)
    pace = frames[-1]["pace"]
    assert pace["requested_speed"] == 1000 and 0.9 <= pace["ratio"] <= 1.1
    assert 5 <= pace["fps"] <= 12 and pace["lagging"] is False


ONE_VCPU = ('name = "one-vcpu"\ndescription = "one vCPU"\nduration_us = 1000\n\n'
            '[td]\nvcpus = 1\nretry_max = 3\n')


def test_a_builtin_chosen_after_a_td_scenario_restores_its_own_defaults(
        client: TestClient) -> None:
    assert client.post("/api/scenarios", content=ONE_VCPU).status_code == 201
    listed = {s["name"]: s for s in client.get("/api/scenarios").json()}
    assert listed["one-vcpu"]["td"] == {"vcpus": 1, "retry_max": 3}  # the page names them
    config = client.patch("/api/config", json={"scenario": "one-vcpu"}).json()
    assert (config["vcpus"], config["retry_max"]) == (1, 3)
    config = client.patch("/api/config", json={"scenario": "zero-step"}).json()
    assert (config["vcpus"], config["retry_max"]) == (8, 16)
    client.patch("/api/config", json={"vcpus": 4})
    config = client.patch("/api/config", json={"scenario": "boot"}).json()
    assert config["vcpus"] == 4, "a field the user set stays when no [td] set it"


def test_hello_and_state_carry_bins_controls_and_compare(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["bin_ns"] == 100_000 and hello["controls"] == []
        assert hello["compare_fields"] == ["policy", "retry_max", "zero_step"]
        assert {h["operand"] for h in hello["holders"]} <= set(hello["operands"])
        # the caption's candidates: who can hold a lock a leaf met, by module version
        aug = {v: hello["conflicts"][v]["SEPT_TREE"]["TDH.MEM.PAGE.AUG"] for v in ("1.0", "1.5")}
        assert "TDH.MEM.RANGE.BLOCK" in aug["1.5"] and "TDH.MEM.PAGE.AUG" not in aug["1.5"]
        assert "TDH.MEM.PAGE.AUG" in aug["1.0"], "module 1.0 takes the tree exclusively in AUG"
        assert hello["conflicts"]["1.5"]["TDR"]["TDH.VP.ENTER"] == ["TDH.MEM.PAGE.ADD"]
        client.patch("/api/config", json={"retry_max": 5})
        state = ws.receive_json()
        assert state["type"] == "state"
        assert state["controls"] == [{"t_ns": 0, "changes": {"retry_max": [16, 5]}}]
        client.put("/api/compare", json={"policy": "upstream"})
        state = ws.receive_json()
        assert state["compare"]["on"] is True and state["compare"]["changes"] == {"policy": "upstream"}
