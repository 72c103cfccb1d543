"""A multi-million-record export streams in flat memory (slow: run with -m slow)."""

from __future__ import annotations

import resource

import pytest

from app.api import _pieces
from app.runner import Recipe
from engine.config import Config
from engine.scenario import builtin_scenario


@pytest.mark.slow
def test_a_long_export_streams_in_flat_memory() -> None:
    config = Config(scenario="conversion")
    recipe = Recipe("long", config, builtin_scenario("conversion"),
                    [(100_000_000, {"retry_max": 4})], 3_000_000_000)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lines = size = 0
    for piece in _pieces("jsonl", recipe):
        lines += piece.count(b"\n")
        size += len(piece)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    assert lines > 2_000_000
    assert grown_mib < 64, f"{grown_mib:.0f} MiB more for a {size >> 20} MiB export"
