"""The OpenAPI description: what it declares, and a schemathesis run finding the server
conforms to it (status codes, media types, headers and bodies of every operation)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.schema import ConfigPatch, Problems
from app.settings import Settings
from engine.export import FORMATS, MEDIA_TYPES
from tests.app.live_server import live_server

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (after the skip)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _spec(client: TestClient) -> dict[str, Any]:
    spec: dict[str, Any] = client.get("/api/openapi.json").json()
    return spec


def test_changes_need_the_bearer_scheme_and_say_401_and_403(client: TestClient) -> None:
    spec = _spec(client)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("tags"), (method, path)
            assert "400" in op["responses"], (method, path)  # the Host check
            if method in ("patch", "put", "post", "delete"):
                assert op["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_bodies_and_the_real_422(client: TestClient) -> None:
    """PATCH /api/config takes ConfigPatch, POST /api/scenarios TOML text; every 422 is
    the Problems shape, which is what the server answers; FastAPI's own is not listed."""
    spec = _spec(client)
    patch = spec["paths"]["/api/config"]["patch"]
    schema = patch["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"].keys() == ConfigPatch.model_fields.keys()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["retry_max"]["maximum"] == 1024
    post = spec["paths"]["/api/scenarios"]["post"]
    assert "application/toml" in post["requestBody"]["content"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if "422" in op["responses"]:
                ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Problems"), (method, path)
    reply = client.patch("/api/config", json={"retry_max": 5000, "policy": "x"})
    assert reply.status_code == 422
    Problems.model_validate(reply.json())


def test_media_types_of_metrics_and_exports(client: TestClient) -> None:
    spec = _spec(client)
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == [
        "text/plain"]
    for path in ("/api/export", "/api/runs/{run_id}/export"):
        op = spec["paths"][path]["get"]
        assert set(op["responses"]["200"]["content"]) == {MEDIA_TYPES[f] for f in FORMATS}
        [fmt] = [p for p in op["parameters"] if p["name"] == "format"]
        assert fmt["schema"]["enum"] == list(FORMATS)
    assert "404" in spec["paths"]["/api/runs/{run_id}/export"]["get"]["responses"]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = Path(tmp_path_factory.mktemp("openapi")) / "data"
    with live_server(Settings(data_dir=data)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return schemathesis.openapi.from_url(base_url + "/api/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_server_conforms_to_its_spec(case: Any, base_url: str) -> None:
    """Generated requests (valid and not) to every operation get answers the spec
    describes. The run is paused after each, so exports stay small."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case.call_and_validate(checks=CHECKS)
    httpx.post(base_url + "/api/run/pause", timeout=30)
