"""The OpenAPI description's pieces: tags, the bearer scheme, bodies and error responses."""

from __future__ import annotations

from typing import Any

from fastapi.security import HTTPBearer

from app.schema import ConfigPatch, HTTPError, Problems
from engine.export import FORMATS, MEDIA_TYPES

TAGS = [
    {"name": "config", "description": "The live config: some fields apply at once, the "
                                      "others start a new run."},
    {"name": "run", "description": "Start, pause and reset the live run."},
    {"name": "stats", "description": "The current run's summary."},
    {"name": "runs", "description": "Every run kept in the data dir."},
    {"name": "compare", "description": "A twin of the current run with other live fields, "
                                       "in lockstep with it."},
    {"name": "exports", "description": "A run's event log, streamed (docs/exports.md)."},
    {"name": "scenarios", "description": "Built-in and posted scenario files."},
    {"name": "compare", "description": "A twin of the current run with some live fields "
                                       "changed, in lockstep."},
    {"name": "sweeps", "description": "Grids of configs run in the background (docs/sweeps.md)."},
    {"name": "observability", "description": "Health, Prometheus metrics, the WebSocket "
                                             "messages' schema."},
]

# Documents the token that state-changing routes need when the server has one; the check
# itself is app.security.require_token.
bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="the server's token (--token or TDX_CONTENTION_TOKEN); "
                                "needed by PATCH, PUT, POST and DELETE when one is set")


Responses = dict[int | str, dict[str, Any]]


def _error(description: str, example: str) -> dict[str, Any]:
    return {"model": HTTPError, "description": description,
            "content": {"application/json": {"example": {"detail": example}}}}


BAD_HOST: Responses = {400: _error("the Host header is not this server's address",
                        "Host 'evil.example' is not allowed")}
UNAUTHORIZED: Responses = {401: _error("a token is set and the request did not carry it",
                            "this server needs 'Authorization: Bearer <token>' for changes")}
CROSS_SITE: Responses = {403: _error("a browser page of another origin", "cross-site request refused")}
NOT_FOUND: Responses = {404: _error("no such run", "unknown run 'x'")}
NO_SWEEP: Responses = {404: _error("no such sweep (or no such file of it)", "no sweep 'x'")}
NO_SCENARIO: Responses = {404: _error("no posted scenario of that name",
                                      "no posted scenario 'x'")}
CONFLICT: Responses = {409: _error("a built-in scenario, or the current run's",
                                   "scenario 'zero-step' is built in")}
GONE: Responses = {410: _error("the run's scenario can no longer be parsed",
                    "run x can no longer be replayed: ...")}
BUSY: Responses = {503: _error("the runner did not answer in 10 s", "the runner is not answering")}
EXPORT_BUSY: Responses = {503: _error(
    "the runner did not answer in 10 s, or Settings.max_exports exports are being written "
    "already (Retry-After says when to try again)",
    "4 exports are being written already; try again when one has finished")}
PROBLEMS: Responses = {422: {"model": Problems, "description": "each bad field with its message; "
                                                    "nothing was changed",
                  "content": {"application/json": {"example": Problems.of(
                      [("retry_max", "must be an integer from 0 to 1024")]).model_dump()}}}}
CHANGES: Responses = {**UNAUTHORIZED, **CROSS_SITE}

PATCH_BODY: dict[str, Any] = {"requestBody": {
    "required": False,
    "description": "some config fields (an empty body changes nothing)",
    "content": {"application/json": {"schema": ConfigPatch.model_json_schema()}},
}}
TOML_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": "a scenario file (docs/scenario-format.md)",
    "content": {"application/toml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}},
}}

FORMAT_DOC = "the export format: " + ", ".join(FORMATS)


def export_responses() -> Responses:
    """200 in every format's media type; 400 for an unknown format; 422 (never seen: the
    parameters are strings) in the one shape every 422 has."""
    content: dict[str, Any] = {MEDIA_TYPES[f]: {"schema": {"type": "string", "format": "binary"}}
                               for f in FORMATS}
    content[MEDIA_TYPES["chrome"]] = {"schema": {  # JSON: described as what it is
        "type": "object", "required": ["metadata", "traceEvents"],
        "properties": {"metadata": {"type": "object"},
                       "traceEvents": {"type": "array", "items": {"type": "object"}}}}}
    return {200: {"description": "the log as a download (gzip'ed with Accept-Encoding: "
                                 "gzip)", "content": content},
            400: _error("an unknown format or a Host that is not this server's",
                        "unknown format 'xml'; valid formats: " + ", ".join(FORMATS)),
            **PROBLEMS}


METRICS_RESPONSES: Responses = {
    200: {"description": "Prometheus text exposition (docs/metrics.md)",
          "content": {"text/plain": {"schema": {"type": "string"}}}}}
