"""The event-log writers (engine.export, engine.chrome): JSONL, CSV and Chrome trace."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from engine.build import Builder
from engine.chrome import BUSY_INSTANTS_MAX_RECORDS
from engine.config import LIVE_FIELDS, Config
from engine.export import (
    CSV_COLUMNS,
    FORMATS,
    TEXT_FORMATS,
    chunks,
    encode,
    estimated_bytes,
    jsonl_lines,
)
from engine.params import Timing
from engine.records import FIELDS
from engine.run import records
from engine.scenario import builtin_scenario
from engine.sim import Simulation, replay
from engine.status import OPERANDS
from engine.zap import Zapper
from tests.engine.support import (
    CALL_KINDS,
    InlineScenario,
    export_text,
    parse_jsonl,
    parse_us,
    recount,
    run_log,
)

END_NS = 2_000_000


def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return dict(pairs)


def test_jsonl_fields_in_contract_order() -> None:
    """Every JSONL line is one object whose first keys are the contract's fields, in order."""
    text = export_text(Config(scenario="conversion"), END_NS, "jsonl")
    assert text.endswith("\n")
    for line in text.splitlines():
        rec = json.loads(line, object_pairs_hook=pairs_hook)
        assert tuple(rec)[: len(FIELDS)] == FIELDS


def test_csv_matches_jsonl_row_for_row() -> None:
    """CSV: a header of the contract's fields (then live fields, extra), one row per JSONL
    record with the same values."""
    config = Config(scenario="conversion", seed=3)
    log = parse_jsonl(export_text(config, END_NS, "jsonl"))
    rows = list(csv.reader(io.StringIO(export_text(config, END_NS, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert tuple(rows[0][: len(FIELDS)]) == FIELDS
    assert len(rows) == len(log) + 1
    for row, rec in zip(rows[1:], log, strict=True):
        assert len(row) == len(CSV_COLUMNS)
        expected = ["" if rec[f] is None else str(rec[f]) for f in FIELDS]
        assert row[: len(FIELDS)] == expected


def test_control_records_fill_the_live_columns() -> None:
    """A control record carries the changed fields as JSONL keys and as CSV columns."""
    config = Config(scenario="zero-step")
    timeline = [(300_000, {"retry_max": 4, "zero_step": False}), (600_000, {"policy": "none"})]
    recs = list(replay(config, timeline, 1_000_000, builtin_scenario(config.scenario)))
    controls = [json.loads(line) for line in jsonl_lines(recs) if '"control"' in line]
    assert [(c["t_ns"], c["actor"]) for c in controls] == [(300_000, "user"), (600_000, "user")]
    assert controls[0]["retry_max"] == 4 and controls[0]["zero_step"] is False
    assert controls[1]["policy"] == "none"
    rows = [r for r in csv.DictReader(io.StringIO("".join(chunks("csv", recs))))
            if r["kind"] == "control"]
    assert [(r["retry_max"], r["zero_step"], r["policy"]) for r in rows] == [
        ("4", "false", ""), ("", "", "none")]
    assert set(LIVE_FIELDS) <= set(rows[0])


def test_chrome_trace_shape() -> None:
    """Chrome trace: valid JSON; M names every actor's track; one X per attempt; a BUSY
    instant per BUSY; a zero-step instant per activation; counters sum to the BUSY count."""
    config = Config(scenario="zero-step", seed=2)
    summary, _ = run_log(config, END_NS)
    events = json.loads(export_text(config, END_NS, "chrome"))["traceEvents"]
    log = parse_jsonl(export_text(config, END_NS, "jsonl"))
    actors = {r["actor"] for r in log}
    threads = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert threads == actors
    calls = [e for e in events if e["ph"] == "X" and e["cat"] in CALL_KINDS]
    assert len(calls) == summary["attempts"]
    busy = [e for e in events if e["ph"] == "i" and e.get("cat") == "busy"]
    assert len(busy) == summary["busy"] > 0
    zero = [e for e in events if e["ph"] == "i" and e.get("cat") == "zero_step"]
    assert len(zero) == summary["zero_step_activations"] > 0
    counters = [e for e in events if e["ph"] == "C"]
    assert sum(sum(e["args"].values()) for e in counters) == summary["busy"]


def test_chrome_ts_and_dur_are_exact_microseconds() -> None:
    """ts/dur are written as %d.%03d microseconds: exactly t_ns and dur_ns of the records."""
    config = Config(scenario="boot", vcpus=2)
    text = export_text(config, 500_000, "chrome")
    log = [r for r in parse_jsonl(export_text(config, 500_000, "jsonl"))
           if r["kind"] in CALL_KINDS]
    xs = re.findall(r'"ph":"X","pid":1,"tid":\d+,"ts":(\d+\.\d{3}),"dur":(\d+\.\d{3})', text)
    assert [(parse_us(ts), parse_us(dur)) for ts, dur in xs] == [
        (r["t_ns"], r["dur_ns"]) for r in log]


def test_unknown_format_is_refused_by_name() -> None:
    """chunks() and encode() refuse an unknown format with a message listing the valid ones."""
    assert FORMATS == ("jsonl", "csv", "chrome", "perfetto")
    with pytest.raises(ValueError, match="xml.*jsonl, csv, chrome, perfetto"):
        chunks("xml", [])
    with pytest.raises(ValueError, match="xml.*jsonl, csv, chrome, perfetto"):
        encode("xml", [])
    with pytest.raises(ValueError, match="perfetto is a binary format"):
        chunks("perfetto", [])


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_writers_stream(fmt: str) -> None:
    """Writers are lazy: the first pieces come out before the record stream is exhausted."""
    consumed = [0]

    def endless() -> Iterator[Any]:
        for rec in records(Config(), None, 10**12):
            consumed[0] += 1
            yield rec

    out = chunks(fmt, endless())
    pieces = [next(out) for _ in range(3)]
    assert "".join(pieces)
    assert consumed[0] < 20_000  # of an endless stream: pieces are bounded batches


def test_summary_events_equal_jsonl_lines() -> None:
    """The written log has exactly `events` lines (JSONL) and events+1 (CSV)."""
    config = Config(scenario="conversion", policy="upstream")
    summary, text = run_log(config, END_NS, "jsonl")
    assert text.count("\n") == summary["events"]
    summary_csv, text_csv = run_log(config, END_NS, "csv")
    assert text_csv.count("\n") == summary_csv["events"] + 1
    assert recount(parse_jsonl(text))["attempts"] == summary["attempts"]


def test_open_enter_closed_at_the_end_contains_its_tdcall() -> None:
    """A run that ends while a vCPU is in a TDCALL: the TDH.VP.ENTER record still contains the
    TDCALL record that started inside it (no partial overlap on the vCPU's track)."""
    config = Config(scenario="boot", policy="none", retry_max=0, zero_step=False, vcpus=2,
                    module_version="1.0", seed=1)
    log = parse_jsonl(export_text(config, 1_000_000, "jsonl"))
    for actor in ("vcpu0", "vcpu1"):
        mine = [r for r in log if r["actor"] == actor and r["kind"] in CALL_KINDS]
        enters = [r for r in mine if r["leaf"] == "TDH.VP.ENTER"]
        for tdcall in (r for r in mine if r["kind"] == "tdcall"):
            outer = [e for e in enters if e["t_ns"] <= tdcall["t_ns"] < e["t_ns"] + e["dur_ns"]]
            assert outer, tdcall
            assert tdcall["t_ns"] + tdcall["dur_ns"] <= outer[-1]["t_ns"] + outer[-1]["dur_ns"], (
                tdcall, outer[-1])


def _kvm_bug_log() -> list[str]:
    """upstream zap path against a builder that keeps TDR exclusive: BLOCK fails twice (a
    KVM bug) while the builder's PAGE.ADD records keep coming."""
    def extra(sim: Simulation) -> None:
        Builder(sim, 400)
        sim.host_actors.append(Zapper(sim, 0, 4, 20_000, 0))

    scenario = InlineScenario([], timing=Timing(page_add_ns=300), extra=extra)
    sim = Simulation(Config(scenario="inline", vcpus=1, policy="upstream"), scenario)
    recs = sim.run_until(300_000) + sim.finish()
    return list(jsonl_lines(recs))


def test_kvm_bug_record_keeps_time_order() -> None:
    """With upstream KVM bugs in the log, t_ns still never decreases along seq."""
    log = [json.loads(line) for line in _kvm_bug_log()]
    assert any(r["kind"] == "kvm_bug" for r in log)
    times = [r["t_ns"] for r in log]
    assert all(a <= b for a, b in zip(times, times[1:], strict=False))


def test_kvm_bug_record_has_no_duplicate_keys() -> None:
    """A kvm_bug record is one JSON object without repeated keys."""
    lines = [line for line in _kvm_bug_log() if '"kvm_bug"' in line]
    assert lines
    for line in lines:
        json.loads(line, object_pairs_hook=pairs_hook)


def _chrome(config: Config, end_ns: int, timeline: list[tuple[int, dict[str, Any]]] | None = None,
            expected_records: int | None = None) -> dict[str, Any]:
    recs = records(config, None, end_ns, timeline=timeline or None)
    trace: dict[str, Any] = json.loads("".join(chunks("chrome", recs, config.to_dict(),
                                                      expected_records)))
    return trace


def test_chrome_counters_name_every_operand_in_every_window() -> None:
    """Each BUSY counter sample names all seven operands (zeros included), one sample per
    100 us window without gaps, so a viewer never holds a stale count: the busiest operand
    has windows without BUSY, and their samples say 0."""
    config = Config(scenario="conversion", seed=1)
    events = _chrome(config, END_NS)["traceEvents"]
    samples = [e for e in events if e["ph"] == "C"]
    assert all(tuple(e["args"]) == OPERANDS for e in samples)
    starts = [parse_us(e["ts"] if isinstance(e["ts"], str) else f"{e['ts']:.3f}") for e in samples]
    assert starts == [i * 100_000 for i in range(len(samples))]
    assert len(samples) == END_NS // 100_000
    busiest = max(OPERANDS, key=lambda op: sum(e["args"][op] for e in samples))
    assert any(e["args"][busiest] == 0 for e in samples)
    assert any(e["args"][busiest] > 0 for e in samples)


def test_chrome_metadata_and_global_control_instants() -> None:
    """The trace carries the run's config under `metadata`; each control change is a
    global instant (s = g) carrying the changed fields."""
    config = Config(scenario="zero-step", vcpus=4)
    timeline = [(300_000, {"retry_max": 4}), (600_000, {"zero_step": False})]
    trace = _chrome(config, 1_000_000, timeline)
    assert trace["metadata"]["config"] == config.to_dict()
    controls = [e for e in trace["traceEvents"] if e.get("cat") == "control"]
    assert [(e["ph"], e["s"], e["args"]) for e in controls] == [
        ("i", "g", {"retry_max": 4}), ("i", "g", {"zero_step": False})]
    assert [e["ts"] for e in controls] == [300.0, 600.0]


def test_chrome_busy_instants_off_for_large_runs() -> None:
    """BUSY instants are written for runs up to BUSY_INSTANTS_MAX_RECORDS records and left
    out above (metadata says which); the X events and counters are the same either way."""
    config = Config(scenario="zero-step", seed=2)
    small = _chrome(config, END_NS, expected_records=BUSY_INSTANTS_MAX_RECORDS)
    large = _chrome(config, END_NS, expected_records=BUSY_INSTANTS_MAX_RECORDS + 1)
    assert small["metadata"]["busy_instants"] and not large["metadata"]["busy_instants"]
    busy = [e for e in small["traceEvents"] if e.get("cat") == "busy"]
    assert busy and not [e for e in large["traceEvents"] if e.get("cat") == "busy"]
    assert [e for e in small["traceEvents"] if e.get("cat") != "busy"] == large["traceEvents"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_gzip_is_the_same_log_compressed(fmt: str) -> None:
    """encode(gzip=True) is one gzip stream whose content is exactly the plain export."""
    config = Config(scenario="conversion")
    plain = b"".join(encode(fmt, records(config, None, 500_000), config.to_dict()))
    packed = b"".join(encode(fmt, records(config, None, 500_000), config.to_dict(), gzip=True))
    assert gzip.decompress(packed) == plain
    assert len(packed) < len(plain) / 3


def test_estimated_bytes_scales_with_records() -> None:
    """The size estimate is records x bytes per record, and smaller for a chrome trace
    without BUSY instants."""
    assert estimated_bytes("jsonl", 1000) == 1000 * estimated_bytes("jsonl", 1)
    n = BUSY_INSTANTS_MAX_RECORDS
    assert estimated_bytes("chrome", n + 1) < estimated_bytes("chrome", n) / n * (n + 1)


def test_text_exports_do_not_load_protobuf() -> None:
    """A JSONL, CSV or Chrome export never imports protobuf or the perfetto package."""
    code = ("import sys; from engine.config import Config; from engine.export import encode; "
            "from engine.run import records\n"
            "for f in ('jsonl', 'csv', 'chrome'):\n"
            "    b''.join(encode(f, records(Config(), None, 100_000)))\n"
            "bad = [m for m in sys.modules if m.startswith(('google', 'perfetto'))]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
