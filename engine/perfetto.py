"""The Perfetto writer: a native protobuf trace (.pftrace), streamed in batches of packets.

Built with the `perfetto` package's TraceProtoBuilder and its TracePacket protos, imported
when the first trace is written, so that a JSONL run never loads protobuf. A trace file is
a `Trace` message, whose only field is the repeated `packet`: the serialized batches,
concatenated, are one valid trace, so memory stays flat however long the run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from engine.records import CALL_KINDS, CONTROL, ZERO_STEP, Record
from engine.status import OPERANDS, status_hex
from engine.tracks import BusyWindows, ThreadIds

BATCH_RECORDS = 1024  # records per serialized batch of packets
TEMPLATES_MAX = 65_536  # cached attempt packets; cleared when full (unbounded attempts)
SEQUENCE_ID = 1  # every packet is on one sequence, which owns the interned strings
PID = 1
PROCESS_UUID, CONTROL_UUID, ZERO_STEP_UUID = 1, 2, 3
COUNTER_UUID_BASE = 100  # + the operand's index
ACTOR_UUID_BASE = 1000  # + the order in which the actor first appears
# TracePacket.SequenceFlags
INCREMENTAL_STATE_CLEARED, NEEDS_INCREMENTAL_STATE = 1, 2
SLICE_BEGIN, SLICE_END, INSTANT, COUNTER = 1, 2, 3, 4  # TrackEvent.Type


def _text(value: Any) -> str:
    """A config value as text, booleans as in JSON."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


class _Interned:
    """Interning tables of one sequence: a string's iid, and the new ones to emit."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.values: dict[str, int] = {}
        self.categories: dict[str, int] = {}

    def iid(self, table: dict[str, int], text: str, packet: Any, field: str) -> int:
        iid = table.get(text)
        if iid is None:
            iid = table[text] = len(table) + 1
            entry = getattr(packet.interned_data, field).add()
            entry.iid = iid
            if field == "debug_annotation_string_values":
                entry.str = text.encode()
            else:
                entry.name = text
        return iid


class PerfettoWriter:
    """Turns records into packets on one TraceProtoBuilder per batch."""

    def __init__(self, config: dict[str, Any] | None) -> None:
        # The perfetto package ships no type information, and the mypyc build (run in
        # pip's isolated build environment, without the runtime dependencies) cannot
        # see it at all: either error is expected.
        from perfetto.trace_builder.proto_builder import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            TraceProtoBuilder,
        )

        self._builder_type = TraceProtoBuilder
        self.builder = TraceProtoBuilder()
        self.interned = _Interned()
        self.tids = ThreadIds()
        self.actor_uuids: dict[str, int] = {}
        self._templates: dict[tuple[Any, ...], tuple[bytes, bytes | None]] = {}
        self._preamble(config or {})

    def take(self) -> bytes:
        """The packets so far, serialized; the next batch starts empty."""
        data: bytes = self.builder.serialize()
        self.builder = self._builder_type()
        return data

    def _packet(self, t_ns: int | None = None) -> Any:
        packet = self.builder.add_packet()
        packet.trusted_packet_sequence_id = SEQUENCE_ID
        if t_ns is not None:
            packet.timestamp = t_ns
            packet.sequence_flags = NEEDS_INCREMENTAL_STATE
        return packet

    def _preamble(self, config: dict[str, Any]) -> None:
        first = self._packet()
        first.sequence_flags = INCREMENTAL_STATE_CLEARED
        for key, value in config.items():
            attribute = first.trace_attributes.attribute.add()
            attribute.key = "config." + key
            if isinstance(value, int) and not isinstance(value, bool):
                attribute.long_value = value
            else:
                attribute.string_value = _text(value)
        process = self._packet().track_descriptor
        process.uuid = PROCESS_UUID
        process.process.pid = PID
        process.process.process_name = "TD"
        process.process.process_labels.extend(f"{k}={_text(v)}" for k, v in config.items())
        self._child_track(CONTROL_UUID, "control changes")
        self._child_track(ZERO_STEP_UUID, "zero-step activations")
        for index, operand in enumerate(OPERANDS):
            track = self._child_track(COUNTER_UUID_BASE + index, f"BUSY {operand} per 100us")
            track.counter.unit_name = "BUSY"
        self._annotate(self._event(0, CONTROL_UUID, INSTANT, "config"), config)

    def _child_track(self, uuid: int, name: str) -> Any:
        track = self._packet().track_descriptor
        track.uuid = uuid
        track.parent_uuid = PROCESS_UUID
        track.name = name
        return track

    def _actor_track(self, actor: str) -> int:
        uuid = self.actor_uuids.get(actor)
        if uuid is None:
            uuid = self.actor_uuids[actor] = ACTOR_UUID_BASE + len(self.actor_uuids)
            self.tids.new(actor)
            track = self._packet().track_descriptor
            track.uuid = uuid
            track.thread.pid = PID
            track.thread.tid = self.tids[actor]
            track.thread.thread_name = actor
        return uuid

    def _event(self, t_ns: int, track_uuid: int, kind: int, name: str | None = None,
               category: str | None = None) -> Any:
        """A packet holding one TrackEvent (returned: its interned data go on it too)."""
        packet = self._packet(t_ns)
        event = packet.track_event
        event.type = kind
        event.track_uuid = track_uuid
        if name is not None:
            event.name_iid = self.interned.iid(self.interned.names, name, packet, "event_names")
        if category is not None:
            event.category_iids.append(self.interned.iid(self.interned.categories, category,
                                                         packet, "event_categories"))
        return packet

    def _annotate(self, packet: Any, values: dict[str, Any], interned: bool = False) -> None:
        """Debug annotations on `packet`'s event; strings interned when they repeat."""
        event = packet.track_event
        for key, value in values.items():
            if value is None:
                continue
            note = event.debug_annotations.add()
            note.name_iid = self.interned.iid(self.interned.keys, key, packet,
                                              "debug_annotation_names")
            if isinstance(value, bool):
                note.bool_value = value
            elif isinstance(value, int):
                note.int_value = value
            elif isinstance(value, float):
                note.double_value = value
            elif isinstance(value, str) and interned:
                note.string_value_iid = self.interned.iid(
                    self.interned.values, value, packet, "debug_annotation_string_values")
            elif isinstance(value, str):
                note.string_value = value
            else:
                note.legacy_json_value = json.dumps(value, separators=(",", ":"))

    def batch(self, records: list[Record], windows: BusyWindows) -> bytes:
        """The packets of `records` (and of the counter windows they close), serialized.

        A run repeats a few thousand (kind, actor, leaf, status, operand, attempt,
        outcome) combinations: the packets of each are built field by field once and kept
        as templates, whose bytes are then parsed into the builder's next packets (upb,
        in C) and timed: a fraction of the cost of setting every field from Python
        (bench/export.py). A record's extra keys are annotated on top."""
        templates = self._templates
        add = self.builder.trace.packet.add
        for rec in records:
            t = rec[0]
            if t >= windows.start_ns + windows.window_ns:
                for start, counts in windows.passed(t):
                    self.counters(start, counts)
            if rec[8] == "busy" or rec[8] == "giveup":
                windows.count(rec[6])
            template = templates.get(rec[2:9])
            if template is None:
                if len(templates) >= TEMPLATES_MAX:
                    templates.clear()
                packet, templates[rec[2:9]] = self._build(rec)
            else:
                packet = add()
                packet.MergeFromString(template[0])
                packet.timestamp = t
                if template[1] is not None:
                    closing = add()
                    closing.MergeFromString(template[1])
                    closing.timestamp = t + rec[1]
            if rec[9]:
                self._annotate(packet, rec[9])
        return self.take()

    def _build(self, rec: Record) -> tuple[Any, tuple[bytes, bytes | None]]:
        """A record's packets (without its extras), field by field; the begin packet and
        the templates of both."""
        t, dur, kind, actor = rec[0], rec[1], rec[2], rec[3]
        end: Any = None
        if kind == CONTROL:
            begin = self._event(t, CONTROL_UUID, INSTANT, "control")
        elif kind == ZERO_STEP:
            begin = self._event(t, ZERO_STEP_UUID, INSTANT, "zero-step")
            self._annotate(begin, {"actor": actor})
        else:
            track = self._actor_track(actor)
            if kind in CALL_KINDS:
                begin = self._event(t, track, SLICE_BEGIN, rec[4], kind)
                self._annotate(begin, {"leaf": rec[4], "status": status_hex(rec[5]),
                                       "operand": rec[6], "outcome": rec[8]}, interned=True)
                self._annotate(begin, {"attempt": rec[7]})
            else:
                begin = self._event(t, track, SLICE_BEGIN if dur else INSTANT, kind, kind)
            if kind in CALL_KINDS or dur:
                end = self._event(t + dur, track, SLICE_END)
        return begin, (self._template(begin), None if end is None else self._template(end))

    def _template(self, packet: Any) -> bytes:
        """`packet` without its timestamp and interned data, serialized."""
        copy = type(packet)()
        copy.CopyFrom(packet)
        copy.ClearField("timestamp")
        copy.ClearField("interned_data")
        data: bytes = copy.SerializeToString()
        return data

    def counters(self, t_ns: int, counts: dict[str, int]) -> None:
        for index, operand in enumerate(OPERANDS):
            packet = self._event(t_ns, COUNTER_UUID_BASE + index, COUNTER)
            packet.track_event.counter_value = counts[operand]


def perfetto_chunks(records: Iterable[Record], config: dict[str, Any] | None = None,
                    expected_records: int | None = None) -> Iterator[bytes]:
    """A Perfetto trace of the records: a thread track per actor with a slice per attempt
    (leaf, status, operand, attempt, outcome as debug annotations), a BUSY counter track
    per operand, control changes and zero-step activations on tracks of their own, the
    config as trace attributes, process labels and a `config` instant at time 0."""
    writer = PerfettoWriter(config)
    windows = BusyWindows()
    it = iter(records)
    while batch := list(itertools.islice(it, BATCH_RECORDS)):
        yield writer.batch(batch, windows)
    writer.counters(*windows.last())
    yield writer.take()
