"""`run --export`: gzip for .gz names, the Perfetto format, the size note for large exports."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import app.cli
from app.cli import main


def test_gz_name_writes_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file name ending in .gz gets the same log, gzip'ed."""
    plain, packed = tmp_path / "log.jsonl", tmp_path / "log.jsonl.gz"
    assert main(["run", "--duration-us", "800", "--export", str(plain)]) == 0
    assert main(["run", "--duration-us", "800", "--export", str(packed)]) == 0
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert not packed.with_name(packed.name + ".partial").exists()


def test_perfetto_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format perfetto writes a trace Perfetto's protos parse, a slice per attempt."""
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    path = tmp_path / "run.pftrace"
    assert main(["run", "--duration-us", "500", "--export", str(path), "--format", "perfetto",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    ends = [p for p in trace.packet if p.track_event.type == 2]
    assert len(ends) >= summary["attempts"] > 0


def test_large_export_says_its_size_first(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the large-export size, stderr says how big the file will be before it is
    written (here with the threshold lowered to 100 kB); the estimate is within 2x."""
    monkeypatch.setattr(app.cli, "LARGE_EXPORT_BYTES", 100_000)
    path = tmp_path / "trace.json"
    assert main(["run", "--duration-us", "3000", "--export", str(path), "--format", "chrome"]) == 0
    err = capsys.readouterr().err
    assert "the chrome export will be about" in err and str(path) in err
    estimate_mb = float(err.split("about ")[1].split(" MB")[0])  # under 1 GB: in MB
    actual_mb = path.stat().st_size / 1e6
    assert actual_mb / 2 < estimate_mb < actual_mb * 2


def test_small_export_says_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--duration-us", "300", "--export", str(tmp_path / "x.csv"),
                 "--format", "csv"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("name", "fmt"), [("run.pftrace", "perfetto"), ("run.pftrace.gz", "perfetto"),
                                           ("log.csv.gz", "csv"), ("trace.json.gz", "chrome")])
def test_format_from_a_name_with_gz(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    name: str, fmt: str) -> None:
    """Without --format, .pftrace is the Perfetto trace, and a final .gz is looked past."""
    assert main(["run", "--duration-us", "200", "--export", str(tmp_path / name)]) == 0
    assert f"event log ({fmt}) written" in capsys.readouterr().out
    data = (tmp_path / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if fmt == "csv":
        assert data.startswith(b"seq,t_ns")
    elif fmt == "chrome":
        assert data.startswith(b'{"metadata"')
