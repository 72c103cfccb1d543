"""Fuzzing a running server: any PATCH body or scenario file gets a 2xx or 4xx within 10 s,
never a 5xx, and /healthz stays quick meanwhile."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import serving

from engine.config import FIELDS
from engine.params import Timing, Workload

EXAMPLES = 40  # each; keeps the default suite fast
HEALTHZ_MEDIAN_S = 0.05

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from([0, -1, 1e9, 1e306, 10**400, 512, 513, "1.0", "upstream", "boot"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)
bodies = (st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=4)
          .map(json.dumps)
          | st.text(max_size=200)
          | st.integers(1, 3000).map(lambda n: '{"speed": ' + "[" * n + "]" * n + "}"))

numbers = st.integers(-5, 10**12) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.sampled_from([0, 1, 10**18, 10**30])
sections = {"timing": [f.name for f in fields(Timing)],
            "workload": [f.name for f in fields(Workload)],
            "td": ["vcpus", "seed", "retry_max", "policy", "zero_step"]}


@st.composite
def scenario_files(draw: Any) -> str:
    lines = [f'name = "{draw(st.sampled_from(["f1", "f2", "f3", "bad name", ""]))}"',
             f'description = {json.dumps(draw(st.text(max_size=30)))}']
    for section, keys in sections.items():
        chosen = draw(st.dictionaries(st.sampled_from(keys), numbers | st.booleans(), max_size=4))
        if chosen:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"
                      for k, v in chosen.items()]
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=60)))  # anything at all at the end
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A running `serve` process (its own GIL) and one kept-alive client: a new httpx
    client per request costs tens of ms of its own (its TLS context), which is not the
    server's latency."""
    data = Path(tmp_path_factory.mktemp("fuzz"))
    with serving(data) as (base, _), httpx.Client(base_url=base, timeout=10) as client:
        client.post("/api/run/start").raise_for_status()
        yield client


def _healthz_median(client: httpx.Client) -> float:
    times = []
    for _ in range(3):
        began = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _check(answer: httpx.Response, client: httpx.Client) -> None:
    assert answer.status_code < 500, answer.text
    assert _healthz_median(client) < HEALTHZ_MEDIAN_S


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_patch_bodies_never_5xx(server: httpx.Client, body: str) -> None:
    answer = server.patch("/api/config", content=body,
                          headers={"content-type": "application/json"})
    _check(answer, server)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=scenario_files())
def test_scenario_files_never_5xx(server: httpx.Client, text: str) -> None:
    answer = server.post("/api/scenarios", content=text.encode("utf-8", "surrogatepass"))
    _check(answer, server)
    if answer.status_code == 201:  # and running it, on many vCPUs, is fine too
        name = answer.json()["name"]
        _check(server.patch("/api/config", json={"scenario": name, "vcpus": 64}), server)
        server.patch("/api/config", json={"scenario": "zero-step", "vcpus": 8}).raise_for_status()
        _check(server.delete(f"/api/scenarios/{name}"), server)
