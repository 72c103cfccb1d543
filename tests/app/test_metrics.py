"""GET /metrics: counts that match the run, in base units, per `run` label; promtool-clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics
from engine.config import Config
from engine.run import slices
from engine.status import OPERANDS, SEAMCALL_LEAVES, TDCALL_LEAVES
from engine.summary import Tally
from tests.app.server_helpers import run_for


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(series: list[tuple[dict[str, str], float]], **match: str) -> float:
    return sum(v for labels, v in series if all(labels.get(k) == x for k, x in match.items()))


def test_counts_match_the_run(client: TestClient) -> None:
    """After a paused run, the main series equal /api/stats: SEAMCALLs and TDCALLs apart
    (each under its own leaves), BUSY by operand and leaf, retries, give-ups, zero-step
    activations, and the simulated seconds; config_info and run_info name the run."""
    stats = run_for(client, 300_000)
    got = samples(client.get("/metrics").text)
    seam = got["tdx_contention_seamcall_attempts_total"]
    tdc = got["tdx_contention_tdcall_attempts_total"]
    assert {labels["leaf"] for labels, _ in seam} == set(SEAMCALL_LEAVES)
    assert {labels["leaf"] for labels, _ in tdc} == set(TDCALL_LEAVES)
    by_leaf = stats["by_leaf"]
    for leaf, counts in by_leaf.items():
        family = seam if leaf in SEAMCALL_LEAVES else tdc
        assert total(family, leaf=leaf, run="main") == counts["attempts"]
        assert total(got["tdx_contention_busy_total"], leaf=leaf) == counts["busy"]
        assert total(got["tdx_contention_giveups_total"], leaf=leaf) == counts["giveups"]
    assert total(seam) + total(tdc) == stats["attempts"]
    for operand in OPERANDS:
        assert total(got["tdx_contention_busy_total"], operand=operand) == (
            stats["busy_by_operand"][operand])
    assert total(got["tdx_contention_retries_total"]) == stats["retries"]
    assert total(got["tdx_contention_zero_step_activations_total"]) == (
        stats["zero_step_activations"])
    assert total(got["tdx_contention_simulated_seconds_total"]) == pytest.approx(
        stats["sim_ns"] / 1e9)
    [(config, _)] = got["tdx_contention_config_info"]
    assert config == {"run": "main", **{k: str(v).lower() if isinstance(v, bool) else str(v)
                                       for k, v in stats["config"].items()}}
    [(run, _)] = got["tdx_contention_run_info"]
    assert run["run_id"] == stats["run_id"] and run["run"] == "main"


def test_live_change_shows_in_config_info(client: TestClient) -> None:
    client.patch("/api/config", json={"policy": "upstream", "retry_max": 5}).raise_for_status()
    [(config, _)] = samples(client.get("/metrics").text)["tdx_contention_config_info"]
    assert (config["policy"], config["retry_max"]) == ("upstream", "5")


def _tally(config: Config, end_ns: int) -> Tally:
    tally = Tally()
    for batch in slices(config, None, end_ns):
        tally.add(batch)
    return tally


def test_twin_series_under_run_twin() -> None:
    """A compare twin's counts and config appear under run="twin", beside the main's;
    removing the twin removes its series."""
    metrics = Metrics()
    metrics.set_config(Config(), run_id="a")
    metrics.set_config(Config(policy="upstream"), run="twin", run_id="b")
    main, twin = _tally(Config(), 500_000), _tally(Config(policy="upstream"), 500_000)
    metrics.add(main, sim_ns=500_000)
    metrics.add(twin, run="twin")
    got = samples(generate_latest(metrics.registry).decode())
    attempts = got["tdx_contention_seamcall_attempts_total"]
    assert total(attempts, run="twin") == sum(
        c[0] for leaf, c in twin.by_leaf.items() if leaf in SEAMCALL_LEAVES)
    assert total(attempts, run="main") == sum(
        c[0] for leaf, c in main.by_leaf.items() if leaf in SEAMCALL_LEAVES)
    assert total(got["tdx_contention_simulated_seconds_total"], run="twin") == 0.0005
    policies = {labels["run"]: labels["policy"] for labels, _ in got["tdx_contention_config_info"]}
    assert policies == {"main": "bounded", "twin": "upstream"}
    metrics.remove("twin")
    text = generate_latest(metrics.registry).decode()
    assert 'run="twin"' not in text and 'run="main"' in text


def test_promtool_check_metrics(client: TestClient) -> None:
    """Prometheus' own linter accepts the exposition (names, units, types, help)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/test.sh installs it)")
    run_for(client, 100_000)
    text = client.get("/metrics").text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
