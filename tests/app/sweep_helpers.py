"""Small helpers shared by the sweep tests: sweep files, the CLI, reading CSV files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SMALL = """\
name = "small"
description = "a small grid for tests"
scenario = "zero-step"
duration_us = 600
seeds = 2
[fixed]
zero_step = true
[axes]
vcpus = [4, 8]
policy = ["bounded", "upstream"]
retry_max = [0, 4]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`tdx-contention ARGS` in a fresh process (the venv's console script)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sorted_lines(path: Path) -> list[str]:
    header, *body = path.read_text(encoding="utf-8").splitlines()
    return [header, *sorted(body)]


def as_ints(row: dict[str, str], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: int(row[k]) for k in keys}
