"""Export routes: the Perfetto format, gzip by Accept-Encoding, and the same bytes for a
stored run as for the current one."""

from __future__ import annotations

import gzip
import json

import pytest
from fastapi.testclient import TestClient

from app.exports import accepts_gzip
from tests.app.server_helpers import run_for


def test_perfetto_export_is_a_native_trace(client: TestClient) -> None:
    """?format=perfetto answers a .pftrace as application/x-protobuf that parses back with
    Perfetto's protos and holds a slice per attempt of the run."""
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    stats = run_for(client, 200_000)
    reply = client.get("/api/export?format=perfetto")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-protobuf"
    assert reply.headers["content-disposition"].endswith('.pftrace"')
    trace = pb.Trace()
    trace.ParseFromString(reply.content)
    # A call's begin carries its outcome annotation (the one with interned strings).
    begins = [p for p in trace.packet if p.HasField("track_event")
              and p.track_event.type == 1 and len(p.track_event.debug_annotations) >= 4]
    assert len(begins) == stats["attempts"]
    stored = client.get(f"/api/runs/{stats['run_id']}/export?format=perfetto")
    assert stored.content == reply.content


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "chrome", "perfetto"])
def test_gzip_when_the_client_accepts_it(client: TestClient, fmt: str) -> None:
    """Accept-Encoding: gzip gives Content-Encoding: gzip, whose content is exactly the
    plain export; without it (identity) the body is not compressed."""
    run_for(client, 100_000)
    plain = client.get(f"/api/export?format={fmt}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with client.stream("GET", f"/api/export?format={fmt}",
                       headers={"Accept-Encoding": "gzip"}) as packed:
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        raw = b"".join(packed.iter_raw())
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content)


def test_chrome_export_carries_the_config(client: TestClient) -> None:
    """The Chrome trace's metadata is the run's initial config; a live change is a global
    instant."""
    run_for(client, 100_000)
    client.patch("/api/config", json={"retry_max": 3}).raise_for_status()
    run_for(client, 200_000)
    trace = json.loads(client.get("/api/export?format=chrome").content)
    assert trace["metadata"]["config"]["retry_max"] == 16
    controls = [e for e in trace["traceEvents"] if e.get("cat") == "control"]
    assert [(e["s"], e["args"]) for e in controls] == [("g", {"retry_max": 3})]


def test_accept_encoding_parsing() -> None:
    """gzip is taken when listed (or *) without q=0."""
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert accepts_gzip("*")
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("deflate, br")
