"""The headless command line (app.cli): run, scenarios, bad arguments, no web stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import export_format, main
from engine.scenario import BUILTIN_NAMES

CONTRACT_KEYS = {"config", "sim_ns", "events", "attempts", "busy", "retries", "giveups",
                 "zero_step_activations", "busy_by_operand", "by_leaf"}


def test_run_json_prints_exactly_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --json` prints one JSON object with the contract's keys and the defaults."""
    assert main(["run", "--duration-us", "1000", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert out.strip().count("\n") == 0
    assert CONTRACT_KEYS <= set(summary)
    assert summary["config"] == {"scenario": "zero-step", "policy": "bounded", "retry_max": 16,
                                 "zero_step": True, "vcpus": 8, "module_version": "1.5",
                                 "seed": 1, "speed": 1000.0}
    assert summary["sim_ns"] == 1_000_000


def test_run_options_reach_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    """Every `run` option lands in the summary's config."""
    assert main(["run", "--scenario", "conversion", "--policy", "upstream", "--retry-max", "3",
                 "--zero-step", "off", "--vcpus", "4", "--module-version", "1.0",
                 "--seed", "9", "--duration-us", "500", "--json"]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert {k: config[k] for k in ("scenario", "policy", "retry_max", "zero_step", "vcpus",
                                   "module_version", "seed")} == {
        "scenario": "conversion", "policy": "upstream", "retry_max": 3, "zero_step": False,
        "vcpus": 4, "module_version": "1.0", "seed": 9}


@pytest.mark.parametrize("fmt,extra_lines", [("jsonl", 0), ("csv", 1)])
def test_export_line_count_equals_events(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         fmt: str, extra_lines: int) -> None:
    """`--export` writes a log with one line per event (plus the CSV header)."""
    path = tmp_path / f"log.{fmt}"
    assert main(["run", "--duration-us", "1500", "--export", str(path), "--format", fmt,
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(path.read_text().splitlines()) == summary["events"] + extra_lines
    assert not path.with_name(path.name + ".partial").exists()


def test_export_chrome_is_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--format chrome` writes a JSON trace with traceEvents."""
    path = tmp_path / "trace.json"
    assert main(["run", "--duration-us", "500", "--export", str(path), "--format", "chrome"]) == 0
    assert json.loads(path.read_text())["traceEvents"]
    assert str(path) in capsys.readouterr().out


@pytest.mark.parametrize("args,names", [
    (["--retry-max", "2000"], "--retry-max"),
    (["--retry-max", "-1"], "--retry-max"),
    (["--vcpus", "0"], "--vcpus"),
    (["--vcpus", "x"], "--vcpus"),
    (["--zero-step", "maybe"], "--zero-step"),
    (["--module-version", "2.0"], "--module-version"),
    (["--policy", "foo"], "--policy"),
    (["--seed", "-1"], "--seed"),
    (["--scenario", "nope"], "--scenario"),
    (["--format", "xml"], "--format"),
    (["--duration-us", "0"], "--duration-us"),
])
def test_bad_arguments_exit_2_name_the_argument_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: str) -> None:
    """A bad argument exits 2 with a message naming it on stderr; no file, no stdout."""
    path = tmp_path / "out.jsonl"
    duration = [] if args[0] == "--duration-us" else ["--duration-us", "100"]
    with pytest.raises(SystemExit) as exc:
        main(["run", *duration, *args, "--export", str(path), "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert names in captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_bad_value_message_says_what_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    """The message names the accepted range: --retry-max accepts 0 to 1024."""
    with pytest.raises(SystemExit):
        main(["run", "--retry-max", "2000"])
    err = capsys.readouterr().err
    assert "--retry-max" in err and "0" in err and "1024" in err


def test_scenarios_lists_name_tab_description(capsys: pytest.CaptureFixture[str]) -> None:
    """`scenarios` prints one line per scenario: name, a tab, a description."""
    assert main(["scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("\t", 1)[0] for line in lines]
    assert set(BUILTIN_NAMES) <= set(names)
    assert {"boot", "conversion", "zero-step"} <= set(names)
    for line in lines:
        name, description = line.split("\t")
        assert name and description.strip()


def test_console_script_runs_headless_without_the_web_stack() -> None:
    """`tdx-contention run` in a fresh interpreter never imports fastapi, uvicorn or starlette."""
    code = (
        "import sys, io, contextlib\n"
        "from app.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    rc = main(['run', '--duration-us', '1000', '--json'])\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'uvicorn', 'starlette', 'pydantic', 'websockets', 'plotly'))\n"
        "print(rc, web)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "0 []", done.stdout + done.stderr


def test_console_script_entry_point_works() -> None:
    """The installed module entry (python -m app.cli) prints one JSON summary."""
    done = subprocess.run([sys.executable, "-m", "app.cli", "run", "--duration-us", "300",
                           "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sim_ns"] == 300_000


@pytest.mark.parametrize(("args", "message"), [
    (["--export", ""], "--export"),
    (["--scenario", ""], "--scenario"),
    (["--scenario-file", ""], "--scenario-file"),
    (["--format", "csv"], "only with --export"),
])
def test_empty_values_and_a_lone_format_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["run", "--duration-us", "100", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _export_error(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    began = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(["run", "--duration-us", "100000000", "--export", str(path)])
    assert exc.value.code == 2
    assert time.monotonic() - began < 5  # refused before 100 s of simulated time
    return capsys.readouterr().err


def test_export_to_a_directory_is_refused_before_simulating(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _export_error(tmp_path, capsys)
    assert str(tmp_path) in err and "is a directory" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no DIR.partial


def test_export_to_an_unwritable_path_is_refused_before_simulating(
        capsys: pytest.CaptureFixture[str]) -> None:
    target = Path("/sys/tdx-contention-test.jsonl")
    if os.access("/sys", os.W_OK) and not Path("/sys/kernel").is_dir():
        pytest.skip("/sys is writable here")
    err = _export_error(target, capsys)
    assert str(target) in err and "cannot write" in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "first"), [("log.csv", "seq,t_ns"), ("trace.json", '{"traceEvents"'),
                                             ("log.jsonl", '{"seq":0'), ("log.txt", '{"seq":0')])
def test_the_format_comes_from_the_file_name(tmp_path: Path, name: str, first: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    assert main(["run", "--duration-us", "200", "--export", str(path)]) == 0
    assert path.read_text().startswith(first)
    assert export_format(path, "jsonl") == "jsonl"  # --format wins when given


def test_run_refuses_an_unaffordable_vcpu_count(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndescription = "d"\n[workload]\nmulti_gfn_fraction = 0.5\n'
                    "multi_gfn_count = 200000\n")
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["run", "--scenario-file", str(path), "--vcpus", "512"]) == 2
    err = capsys.readouterr().err
    assert "workload.multi_gfn_count" in err and str(path) in err


def test_validate_refuses_a_zero_zap_interval(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "z.toml"
    path.write_text('name = "z"\ndescription = "d"\n[workload]\nzap_pages = 4\n'
                    "zap_interval_ns = 0\n")
    assert main(["validate", str(path)]) == 1
    assert f"{path}: workload.zap_interval_ns:" in capsys.readouterr().err


def test_serve_with_a_file_as_data_dir_is_a_clean_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    assert main(["serve", "--port", "0", "--data-dir", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "f") in err and "Traceback" not in err
