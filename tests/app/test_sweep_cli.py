"""`tdx-contention sweep`: bad sweep files and arguments are named and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.sweep_helpers import SMALL, cli, write

BAD = [
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\nretry_max = [0, 2000]\n",
     "axes.retry_max", "2000"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\nwarp = [1]\n", "axes.warp",
     "unknown key"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\n'timing.vp_entry_ns' = [-5]\n",
     "axes.timing.vp_entry_ns", ">= 0"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\n'timing.warp_ns' = [5]\n",
     "axes.timing.warp_ns", "unknown timing parameter"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\nseed = [1, 2]\n", "axes.seed",
     "seeds"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\npolicy = []\n", "axes.policy",
     "non-empty"),
    ("scenario = 'zero-step'\nduration_us = 100\n[fixed]\nvcpus = 0\n", "fixed.vcpus",
     "1 to 512"),
    ("scenario = 'zero-step'\nduration_us = 100\n[fixed]\nvcpus = 4\n[axes]\nvcpus = [8]\n",
     "axes.vcpus", "also in [fixed]"),
    ("scenario = 'nope'\nduration_us = 100\n", "scenario", "unknown scenario"),
    ("scenario_file = 'missing.toml'\nduration_us = 100\n", "scenario_file", "cannot read"),
    ("scenario = 'zero-step'\n", "duration_us", "required"),
    ("scenario = 'zero-step'\nduration_us = 100\nseeds = 0\n", "seeds", "1 to"),
    ("scenario = 'zero-step'\nduration_us = 100\ncolour = 'red'\n", "colour", "unknown key"),
    ("scenario = 'zero-step'\nduration_us = [\n", "not valid TOML", ""),
    # what no machine here could afford (engine.afford), named by the axis that costs it
    ("scenario = 'conversion'\nduration_us = 100\n[axes]\n"
     "'workload.zap_interval_ns' = [50000, 0]\n", "axes.workload.zap_interval_ns",
     "without simulated time passing"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\nvcpus = [8, 512]\n"
     "'workload.td_memory_mib' = [4096, 100000000]\n", "axes.workload.td_memory_mib", "MiB"),
    ("scenario = 'zero-step'\nduration_us = 100\n[axes]\n" + "retry_max = %s\nvcpus = %s\n"
     "'timing.kick_ns' = %s\n" % (list(range(1000)), list(range(1, 513)), list(range(1000))),
     "axes", "512000000 runs"),
    ("scenario = 'zero-step'\nduration_us = 100\n" + "# padding\n" * 30_000, "file",
     "at most"),
]


@pytest.mark.parametrize(("text", "key", "what"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_sweep_file_names_the_key_and_writes_nothing(tmp_path: Path, text: str, key: str,
                                                          what: str) -> None:
    """Exit 2, the message names the file, the key and what is accepted; no output dir."""
    sweep = write(tmp_path / "bad.toml", text)
    out = tmp_path / "out"
    done = cli("sweep", str(sweep), "--out", str(out))
    assert done.returncode == 2, done.stdout
    assert f"bad.toml: {key}" in done.stderr and what in done.stderr
    assert not out.exists()
    check = cli("sweep", "--check", str(sweep))
    assert check.returncode == 2 and key in check.stderr


@pytest.mark.parametrize(("args", "named"), [
    (["--workers", "0"], "--workers"), (["--seeds", "x"], "--seeds"),
    (["--scheduler", "localhost"], "--scheduler"), (["--name", "nope"], "--name"),
])
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], named: str) -> None:
    file_args = [] if "--name" in args else [str(write(tmp_path / "s.toml", SMALL))]
    done = cli("sweep", *file_args, *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and named in done.stderr
    assert not (tmp_path / "out").exists()


def test_check_and_list(tmp_path: Path) -> None:
    """--check counts the runs without running; --list names the built-in sweeps."""
    done = cli("sweep", "--check", str(write(tmp_path / "s.toml", SMALL)))
    assert done.returncode == 0
    assert "8 points x 2 seeds = 16 runs of 600 us" in done.stdout
    listed = cli("sweep", "--list")
    assert listed.returncode == 0 and listed.stdout.startswith("retry-budget\t")
    check = cli("sweep", "--check", str(Path(__file__).parents[2] / "app/sweep/builtin/retry-budget.toml"))
    assert check.returncode == 0, check.stderr


def test_scenario_file_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    """scenario_file names a scenario file beside the sweep file; the run uses it."""
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "tiny.toml", 'name = "tiny"\ndescription = "two vCPUs"\n'
          '[td]\nvcpus = 2\n[workload]\nzap_pages = 4\nzap_interval_ns = 50000\n')
    sweep = write(tmp_path / "sub" / "s.toml", 'scenario_file = "tiny.toml"\nduration_us = 300\n'
                  '[axes]\npolicy = ["bounded", "upstream"]\n')
    done = cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--no-png")
    assert done.returncode == 0, done.stderr
    assert "2 rows" in done.stdout


def test_serve_takes_a_dask_scheduler_address() -> None:
    """`serve --dask-scheduler` reaches the settings; a malformed address exits 2."""
    import argparse

    from app.cli import build_parser
    from app.serve import settings_from

    parser = build_parser()
    args = parser.parse_args(["serve", "--dask-scheduler", "tcp://10.0.0.5:8786"])
    assert settings_from(args, parser).dask_scheduler == "tcp://10.0.0.5:8786"
    assert isinstance(args, argparse.Namespace)
    done = cli("serve", "--dask-scheduler", "10.0.0.5")
    assert done.returncode == 2 and "--dask-scheduler" in done.stderr


def test_workers_lower_their_priority() -> None:
    """The pool's initializer sets the worker's nice value (19 unless told otherwise)."""
    import subprocess
    import sys

    code = ("import os; from app.sweep.point import lower_priority; lower_priority({}); "
            "print(os.nice(0))")
    for nice, expected in ((None, "19"), (7, "7")):
        arg = "" if nice is None else str(nice)
        out = subprocess.run([sys.executable, "-c", code.format(arg)], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected
