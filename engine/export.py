"""Writers of the event log: JSONL, CSV and Chrome trace, streaming, chosen by name."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.config import LIVE_FIELDS
from engine.records import CALL_KINDS, FIELDS, ZERO_STEP, Record
from engine.status import status_hex

FORMATS = ("jsonl", "csv", "chrome")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv",
               "chrome": "application/json"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "chrome": "json"}
CSV_COLUMNS = FIELDS + LIVE_FIELDS + ("extra",)
COUNTER_WINDOW_NS = 100_000  # Chrome trace: one busy-rate counter sample per 100 us


# json.dumps(value, separators=(",", ":")) without building a JSONEncoder per call (that
# is most of its cost on records with extras, about one in seven in zero-step).
_compact_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def _js(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return '"' + value + '"'  # engine names never need escaping
    return str(value)


def _jsonl_tail(kind: str, actor: str, leaf: str | None, status: int | None,
                operand: str | None, attempt: int | None, outcome: str | None) -> str:
    """A JSONL line from `kind` to `outcome`, without the closing brace."""
    return '"kind":"%s","actor":"%s","leaf":%s,"status":%s,"operand":%s,"attempt":%s,"outcome":%s' % (
        kind, actor, _js(leaf), "null" if status is None else '"' + status_hex(status) + '"',
        _js(operand), _js(attempt), _js(outcome))


# A run's records repeat a few hundred (kind .. outcome) combinations: their text is
# formatted once. Cleared when it grows past this many entries (unbounded attempts).
_TAIL_CACHE_MAX = 65_536


def _jsonl_batch(records: list[Record], tails: dict[tuple[Any, ...], str], seq: int) -> str:
    """The JSONL text of `records`, numbered from `seq`: the one JSONL formatter."""
    lines: list[str] = []
    append = lines.append
    for rec in records:
        key = (rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8])
        tail = tails.get(key)
        if tail is None:
            if len(tails) >= _TAIL_CACHE_MAX:
                tails.clear()
            tail = tails[key] = _jsonl_tail(*key)
        t_ns: int = rec[0]
        dur_ns: int = rec[1]
        extra = rec[9]
        if extra:
            more = _compact_json(extra)[1:-1]
            append(f'{{"seq":{seq},"t_ns":{t_ns},"dur_ns":{dur_ns},{tail},{more}}}\n')
        else:
            append(f'{{"seq":{seq},"t_ns":{t_ns},"dur_ns":{dur_ns},{tail}}}\n')
        seq += 1
    return "".join(lines)


JSONL_PIECE_RECORDS = 512  # lines per piece of jsonl_pieces


def jsonl_batches(batches: Iterable[list[Record]]) -> Iterator[str]:
    """The JSONL text of a run handed out in lists (engine.run.slices): a piece per list."""
    tails: dict[tuple[Any, ...], str] = {}
    seq = 0
    for batch in batches:
        if batch:
            yield _jsonl_batch(batch, tails, seq)
            seq += len(batch)


def jsonl_pieces(records: Iterable[Record]) -> Iterator[str]:
    """One JSON object per record, fields in contract order, extras appended; in pieces of
    JSONL_PIECE_RECORDS lines, one write each."""
    it = iter(records)
    return jsonl_batches(iter(lambda: list(itertools.islice(it, JSONL_PIECE_RECORDS)), []))


def jsonl_lines(records: Iterable[Record]) -> Iterator[str]:
    """jsonl_pieces a line at a time."""
    for piece in jsonl_pieces(records):
        for line in piece[:-1].split("\n"):
            yield line + "\n"


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_lines(records: Iterable[Record]) -> Iterator[str]:
    """A header row, then one row per record; control changes fill the live-field columns."""
    yield ",".join(CSV_COLUMNS) + "\n"
    seq = 0
    empty_live = "," * len(LIVE_FIELDS)
    for rec in records:
        status = rec[5]
        row = "%d,%d,%d,%s,%s,%s,%s,%s,%s,%s" % (
            seq, rec[0], rec[1], rec[2], rec[3], rec[4] or "",
            "" if status is None else status_hex(status), rec[6] or "",
            "" if rec[7] is None else rec[7], rec[8] or "")
        extra = rec[9]
        if extra:
            live = "," + ",".join(_csv(extra.get(k)) for k in LIVE_FIELDS)
            rest = {k: v for k, v in extra.items() if k not in LIVE_FIELDS}
            row += live + "," + (_csv(_compact_json(rest)) if rest else "")
        else:
            row += empty_live + ","
        yield row + "\n"
        seq += 1


def _us(t_ns: int) -> str:
    return "%d.%03d" % divmod(t_ns, 1000)


_TID_BASES = (("vcpu", 1), ("zap", 10_001), ("build", 20_001), ("invalidate", 30_001),
              ("signal", 40_001), ("memslot", 50_001))


def _tid(actor: str) -> int:
    """A track per actor: vcpuN, zapN, ... each get their own range; anything else 90000."""
    for prefix, base in _TID_BASES:
        if actor.startswith(prefix) and actor[len(prefix):].isdigit():
            return base + int(actor[len(prefix):])
    return 90_000


def chrome_chunks(records: Iterable[Record]) -> Iterator[str]:
    """A Chrome trace (opens in Perfetto UI): X per attempt, M per track, instants, counters."""
    yield '{"traceEvents":[\n'
    yield '{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{"name":"TD"}}'
    seen: set[str] = set()
    window_end = COUNTER_WINDOW_NS
    busy: dict[str, int] = {}
    for rec in records:
        t, dur, kind, actor = rec[0], rec[1], rec[2], rec[3]
        while t >= window_end:
            yield _counter(window_end - COUNTER_WINDOW_NS, busy)
            busy = {}
            window_end += COUNTER_WINDOW_NS
        tid = _tid(actor)
        if actor not in seen:
            seen.add(actor)
            yield ',\n{"name":"thread_name","ph":"M","pid":1,"tid":%d,"args":{"name":"%s"}}' % (tid, actor)
        if kind in CALL_KINDS:
            status = status_hex(rec[5])
            yield (',\n{"name":"%s","cat":"%s","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s,'
                   '"args":{"status":"%s","operand":%s,"attempt":%d,"outcome":"%s"}}') % (
                rec[4], kind, tid, _us(t), _us(dur), status, _js(rec[6]), rec[7], rec[8])
            if rec[8] == "busy" or rec[8] == "giveup":
                busy[rec[6]] = busy.get(rec[6], 0) + 1
                yield (',\n{"name":"BUSY %s","cat":"busy","ph":"i","s":"t","pid":1,"tid":%d,'
                       '"ts":%s,"args":{"status":"%s"}}') % (rec[6], tid, _us(t), status)
        elif kind == ZERO_STEP:
            yield (',\n{"name":"zero-step","cat":"zero_step","ph":"i","s":"t","pid":1,'
                   '"tid":%d,"ts":%s}') % (tid, _us(t))
        elif dur:
            yield ',\n{"name":"%s","cat":"%s","ph":"X","pid":1,"tid":%d,"ts":%s,"dur":%s}' % (
                kind, kind, tid, _us(t), _us(dur))
        else:
            args = _compact_json(rec[9] or {})
            yield ',\n{"name":"%s","cat":"%s","ph":"i","s":"t","pid":1,"tid":%d,"ts":%s,"args":%s}' % (
                kind, kind, tid, _us(t), args)
    if busy:
        yield _counter(window_end - COUNTER_WINDOW_NS, busy)
    yield "\n]}\n"


def _counter(t_ns: int, busy: dict[str, int]) -> str:
    args = _compact_json(dict(sorted(busy.items())))
    return ',\n{"name":"BUSY per 100us","ph":"C","pid":1,"tid":0,"ts":%s,"args":%s}' % (_us(t_ns), args)


WRITERS: dict[str, Callable[[Iterable[Record]], Iterator[str]]] = {
    "jsonl": jsonl_pieces, "csv": csv_lines, "chrome": chrome_chunks,
}


def chunks(fmt: str, records: Iterable[Record]) -> Iterator[str]:
    """The text of the event log in format `fmt`, in pieces; ValueError for an unknown one."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return WRITERS[fmt](records)
