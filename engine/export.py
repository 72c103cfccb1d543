"""Writers of the event log: JSONL, CSV, Chrome and Perfetto traces, streaming, chosen by name."""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from engine.chrome import BUSY_INSTANTS_MAX_RECORDS, chrome_chunks
from engine.config import LIVE_FIELDS
from engine.records import FIELDS, Record
from engine.status import status_hex

FORMATS = ("jsonl", "csv", "chrome", "perfetto")
TEXT_FORMATS = ("jsonl", "csv", "chrome")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv",
               "chrome": "application/json", "perfetto": "application/x-protobuf"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "chrome": "json", "perfetto": "pftrace"}
CSV_COLUMNS = FIELDS + LIVE_FIELDS + ("extra",)
# Bytes per record of each format, measured on zero-step and conversion at 8 and 64 vCPUs
# (bench/export.py); for the size an export will have before it is written. Chrome's is
# with BUSY instants (runs up to engine.chrome.BUSY_INSTANTS_MAX_RECORDS records).
BYTES_PER_RECORD = {"jsonl": 178, "csv": 83, "chrome": 200, "perfetto": 60}
BYTES_PER_RECORD_CHROME_LARGE = 140  # without BUSY instants
LARGE_EXPORT_BYTES = 100_000_000  # the CLI and the page say the size above this
PIECE_BYTES = 256 * 1024  # encode() joins the writers' small pieces into pieces this big


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


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def chunks(fmt: str, records: Iterable[Record], config: dict[str, Any] | None = None,
           expected_records: int | None = None) -> Iterator[str]:
    """The text of the event log in a text format, in pieces; ValueError for an unknown
    format. `config` and `expected_records` (how many records the run has, or about) are
    for the Chrome trace's metadata and its choice of BUSY instants."""
    _check(fmt)
    if fmt == "jsonl":
        return jsonl_pieces(records)
    if fmt == "csv":
        return csv_lines(records)
    if fmt == "chrome":
        return chrome_chunks(records, config, expected_records)
    raise ValueError(f"{fmt} is a binary format: use engine.export.encode")


def encode(fmt: str, records: Iterable[Record], config: dict[str, Any] | None = None,
           expected_records: int | None = None, gzip: bool = False) -> Iterator[bytes]:
    """The event log in any format as bytes, in pieces of about PIECE_BYTES (gzip'ed when
    asked): what a file or an HTTP response is written from."""
    _check(fmt)
    if fmt == "perfetto":
        from engine.perfetto import perfetto_chunks  # loads protobuf: only for this format

        pieces: Iterator[bytes] = perfetto_chunks(records, config, expected_records)
    else:
        pieces = (p.encode() for p in chunks(fmt, records, config, expected_records))
    joined = _joined(pieces)
    return _gzipped(joined) if gzip else joined


def encode_batches(fmt: str, batches: Iterable[list[Record]],
                   config: dict[str, Any] | None = None, expected_records: int | None = None,
                   gzip: bool = False) -> Iterator[bytes]:
    """encode() of a run handed out in lists (engine.run.slices)."""
    if fmt == "jsonl" and not gzip:  # the fast path: JSONL formatted a list at a time
        return _joined(p.encode() for p in jsonl_batches(batches))
    flat = (rec for batch in batches for rec in batch)
    return encode(fmt, flat, config, expected_records, gzip)


def write(out: IO[bytes], fmt: str, batches: Iterable[list[Record]],
          config: dict[str, Any] | None = None, expected_records: int | None = None,
          gzip: bool = False) -> None:
    """Write a run's log to a binary file."""
    for piece in encode_batches(fmt, batches, config, expected_records, gzip):
        out.write(piece)


def _joined(pieces: Iterable[bytes]) -> Iterator[bytes]:
    buffer: list[bytes] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= PIECE_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def _gzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """One gzip member (RFC 1952) over all the pieces, compressed as they come."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def estimated_bytes(fmt: str, records: int) -> int:
    """About how big an export of `records` records will be (before gzip)."""
    _check(fmt)
    per_record = BYTES_PER_RECORD[fmt]
    if fmt == "chrome" and records > BUSY_INSTANTS_MAX_RECORDS:
        per_record = BYTES_PER_RECORD_CHROME_LARGE
    return records * per_record
