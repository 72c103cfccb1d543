"""The Perfetto writer (engine.perfetto): the .pftrace parsed back with Perfetto's protos."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from engine.config import Config
from engine.export import encode
from engine.perfetto import BATCH_RECORDS
from engine.run import records
from engine.status import OPERANDS, status_hex
from tests.engine.support import CALL_KINDS

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4


class Parsed:
    """A trace read back: tracks by uuid, events in file order with interned strings resolved."""

    def __init__(self, data: bytes) -> None:
        trace = pb.Trace()
        trace.ParseFromString(data)
        self.packets = list(trace.packet)
        self.tracks: dict[int, Any] = {}
        self.events: list[tuple[int, Any, dict[str, Any], str]] = []  # (ts, event, notes, name)
        names: dict[int, str] = {}
        keys: dict[int, str] = {}
        values: dict[int, str] = {}
        self.attributes: dict[str, Any] = {}
        for packet in self.packets:
            assert packet.trusted_packet_sequence_id == 1
            for n in packet.interned_data.event_names:
                names[n.iid] = n.name
            for n in packet.interned_data.debug_annotation_names:
                keys[n.iid] = n.name
            for n in packet.interned_data.debug_annotation_string_values:
                values[n.iid] = n.str.decode()
            for a in packet.trace_attributes.attribute:
                self.attributes[a.key] = a.string_value or a.long_value
            if packet.HasField("track_descriptor"):
                self.tracks[packet.track_descriptor.uuid] = packet.track_descriptor
            if packet.HasField("track_event"):
                event = packet.track_event
                notes = {keys[d.name_iid]: _value(d, values) for d in event.debug_annotations}
                self.events.append((packet.timestamp, event, notes, names.get(event.name_iid, "")))

    def on(self, uuid: int) -> list[tuple[int, Any, dict[str, Any], str]]:
        return [e for e in self.events if e[1].track_uuid == uuid]

    def track_named(self, name: str) -> int:
        return next(u for u, t in self.tracks.items() if t.name == name)


def _value(note: Any, values: dict[int, str]) -> Any:
    kind = note.WhichOneof("value")
    if kind == "string_value_iid":
        return values[note.string_value_iid]
    return getattr(note, kind)


def _trace(config: Config, end_ns: int, timeline: list[tuple[int, dict[str, Any]]] | None = None,
           ) -> tuple[list[tuple[Any, ...]], Parsed]:
    recs = list(records(config, None, end_ns, timeline=timeline or None))
    return recs, Parsed(b"".join(encode("perfetto", iter(recs), config.to_dict())))


def test_every_attempt_is_a_slice_with_its_fields() -> None:
    """Each seamcall/tdcall record is a slice on its actor's thread track, named by its
    leaf, from t_ns to t_ns + dur_ns, with leaf, status, operand, attempt and outcome as
    debug annotations; every other record of an actor a slice or an instant named by its
    kind: the records, in order, read back from the file."""
    config = Config(scenario="conversion", seed=3)
    recs, parsed = _trace(config, 1_000_000)
    threads = {u: t.thread.thread_name for u, t in parsed.tracks.items() if t.HasField("thread")}
    assert set(threads.values()) == {r[3] for r in recs if r[2] not in ("control", "zero_step")}
    calls = [r for r in recs if r[2] in CALL_KINDS]
    begins = [e for e in parsed.events
              if e[1].type == BEGIN and e[1].track_uuid in threads and "outcome" in e[2]]
    got = [(threads[event.track_uuid], ts, name, n["leaf"], n["status"], n.get("operand"),
            n["attempt"], n["outcome"]) for ts, event, n, name in begins]
    want = [(r[3], r[0], r[4], r[4], status_hex(r[5]), r[6], r[7], r[8]) for r in calls]
    assert got == want
    others = [(r[3], r[0], r[2]) for r in recs if r[2] not in (*CALL_KINDS, "control", "zero_step")]
    got_others = [(threads[e.track_uuid], ts, name) for ts, e, n, name in parsed.events
                  if e.track_uuid in threads and e.type in (BEGIN, INSTANT) and "outcome" not in n]
    assert others and got_others == others
    ends = Counter((e[1].track_uuid, e[0]) for e in parsed.events if e[1].type == END)
    expect_ends = Counter((next(u for u, a in threads.items() if a == r[3]), r[0] + r[1])
                          for r in recs if r[2] in CALL_KINDS or r[1])
    assert ends == expect_ends


def test_counters_zero_step_and_control_tracks() -> None:
    """BUSY is a counter track per operand sampled every 100 us (zeros included) and summing
    to the run's BUSY; zero-step activations and control changes are instants on tracks of
    their own; the config is in the trace."""
    config = Config(scenario="zero-step", vcpus=4)
    timeline = [(300_000, {"retry_max": 4}), (600_000, {"zero_step": False})]
    recs, parsed = _trace(config, 1_000_000, timeline)
    busy = Counter(r[6] for r in recs if r[2] in CALL_KINDS and r[8] in ("busy", "giveup"))
    for operand in OPERANDS:
        samples = parsed.on(parsed.track_named(f"BUSY {operand} per 100us"))
        assert [e[0] for e in samples] == [i * 100_000 for i in range(10)]
        assert all(e[1].type == COUNTER for e in samples)
        assert sum(e[1].counter_value for e in samples) == busy[operand]
    zero = parsed.on(parsed.track_named("zero-step activations"))
    want = [(r[0], r[3]) for r in recs if r[2] == "zero_step"]
    assert want and [(e[0], e[2]["actor"]) for e in zero] == want
    control = parsed.on(parsed.track_named("control changes"))
    assert [(e[0], e[3], e[2]) for e in control] == [
        (0, "config", config.to_dict()), (300_000, "control", {"retry_max": 4}),
        (600_000, "control", {"zero_step": False})]
    assert parsed.attributes["config.policy"] == "bounded"
    assert parsed.attributes["config.vcpus"] == 4
    process = parsed.tracks[1].process
    assert process.process_name == "TD" and "scenario=zero-step" in process.process_labels


def test_streamed_in_batches() -> None:
    """The writer hands out a serialized batch per BATCH_RECORDS records (flat memory), and
    the batches concatenated are one trace."""
    config = Config(scenario="zero-step")
    consumed = [0]

    def endless() -> Any:
        for rec in records(config, None, 10**12):
            consumed[0] += 1
            yield rec

    out = encode("perfetto", endless(), config.to_dict())
    pieces = [next(out) for _ in range(2)]
    assert consumed[0] < 40 * BATCH_RECORDS
    assert Parsed(b"".join(pieces)).events


def test_same_seed_same_bytes() -> None:
    """The same config gives a byte-identical trace."""
    config = Config(scenario="conversion", seed=5)
    one = b"".join(encode("perfetto", records(config, None, 500_000), config.to_dict()))
    two = b"".join(encode("perfetto", records(config, None, 500_000), config.to_dict()))
    assert one == two


@pytest.mark.slow
def test_a_long_trace_streams_in_flat_memory() -> None:
    """Over a million records written as a Perfetto trace grow the process by little: the
    batches are handed out and dropped (slow: run with -m slow)."""
    import resource

    config = Config(scenario="zero-step", vcpus=64)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = 0
    count = [0]

    def counted() -> Any:
        for rec in records(config, None, 20_000_000):
            count[0] += 1
            yield rec

    for piece in encode("perfetto", counted(), config.to_dict()):
        size += len(piece)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    assert count[0] > 1_000_000
    assert grown_mib < 64, f"{grown_mib:.0f} MiB more for a {size >> 20} MiB trace"
