"""The Chrome trace writer (JSON Trace Event Format; opens in Perfetto UI), streaming."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.records import CALL_KINDS, CONTROL, ZERO_STEP, Record
from engine.status import status_hex
from engine.tracks import BusyWindows, ThreadIds

# BUSY instants repeat what the X events' args say; past this many records they are left
# out: in large runs most records are BUSY (a 64-vCPU zero-step run of 100 ms has 9.8 M
# records, 6.3 M of them BUSY), and the instants add a third to the file (200 rather than
# 140 bytes a record, bench/export.py) and to a viewer's memory. Up to 1 M records the
# trace stays near 200 MB with them.
BUSY_INSTANTS_MAX_RECORDS = 1_000_000
COUNTER_NAME = "BUSY per 100us"

_compact_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def _js(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return '"' + value + '"'  # engine names never need escaping
    return str(value)


def _us(t_ns: int) -> str:
    return "%d.%03d" % divmod(t_ns, 1000)


def busy_instants_for(expected_records: int | None) -> bool:
    """Whether a trace of about `expected_records` records carries BUSY instants."""
    return expected_records is None or expected_records <= BUSY_INSTANTS_MAX_RECORDS


def chrome_chunks(records: Iterable[Record], config: dict[str, Any] | None = None,
                  expected_records: int | None = None) -> Iterator[str]:
    """A Chrome trace: `metadata` (the run's config), M naming each track, X per attempt,
    instants for zero-step activations (and BUSY, unless the run is large), control changes
    as global instants, and a BUSY counter naming every operand in every sample."""
    busy_instants = busy_instants_for(expected_records)
    meta = {"tool": "tdx-contention", "config": config or {},
            "counter_window_ns": BusyWindows().window_ns, "busy_instants": busy_instants}
    yield '{"metadata":%s,"traceEvents":[\n' % _compact_json(meta)
    yield '{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{"name":"TD"}}'
    tids = ThreadIds()
    windows = BusyWindows()
    for rec in records:
        t, dur, kind, actor = rec[0], rec[1], rec[2], rec[3]
        for start, counts in windows.passed(t):
            yield _counter(start, counts)
        new = tids.new(actor)
        if new is not None:
            yield ',\n{"name":"thread_name","ph":"M","pid":1,"tid":%d,"args":{"name":"%s"}}' % (new, actor)
        tid = tids[actor]
        if kind in CALL_KINDS:
            status = status_hex(rec[5])
            # A call's extra keys (`synthetic`, `injected`, ...) join its args.
            more = "," + _compact_json(rec[9])[1:-1] if rec[9] else ""
            yield (',\n{"name":"%s","cat":"%s","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s,'
                   '"args":{"status":"%s","operand":%s,"attempt":%d,"outcome":"%s"%s}}') % (
                rec[4], kind, tid, _us(t), _us(dur), status, _js(rec[6]), rec[7], rec[8], more)
            if rec[8] == "busy" or rec[8] == "giveup":
                windows.count(rec[6])
                if busy_instants:
                    yield (',\n{"name":"BUSY %s","cat":"busy","ph":"i","s":"t","pid":1,"tid":%d,'
                           '"ts":%s,"args":{"status":"%s"}}') % (rec[6], tid, _us(t), status)
        elif kind == ZERO_STEP:
            yield (',\n{"name":"zero-step","cat":"zero_step","ph":"i","s":"t","pid":1,'
                   '"tid":%d,"ts":%s}') % (tid, _us(t))
        elif kind == CONTROL:
            # A global instant: a line across every track at the moment the change applied.
            yield (',\n{"name":"control","cat":"control","ph":"i","s":"g","pid":1,"tid":%d,'
                   '"ts":%s,"args":%s}') % (tid, _us(t), _compact_json(rec[9] or {}))
        elif dur:
            args = _compact_json(rec[9] or {})
            yield ',\n{"name":"%s","cat":"%s","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s,"args":%s}' % (
                kind, kind, tid, _us(t), _us(dur), args)
        else:
            args = _compact_json(rec[9] or {})
            yield ',\n{"name":"%s","cat":"%s","ph":"i","s":"t","pid":1,"tid":%d,"ts":%s,"args":%s}' % (
                kind, kind, tid, _us(t), args)
    yield _counter(*windows.last())
    yield "\n]}\n"


def _counter(t_ns: int, counts: dict[str, int]) -> str:
    return ',\n{"name":"%s","ph":"C","pid":1,"tid":0,"ts":%s,"args":%s}' % (
        COUNTER_NAME, _us(t_ns), _compact_json(counts))
