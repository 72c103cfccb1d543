"""The mypyc-compiled engine (what the Docker image runs) writes the same logs as the
Python sources, byte for byte, and really is compiled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import Config
from engine.export import chunks
from tests.engine.support import export_text

ROOT = Path(__file__).resolve().parents[2]
CASES = [
    ("zero-step", "bounded", "1.5", 8),
    ("conversion", "upstream", "1.5", 8),
    ("boot", "vmm_lock", "1.0", 12),
]
END_NS = 3_000_000
# Runs in the compiled tree: prints {case: {fmt: sha1}} and whether sim is an extension.
PROBE = """
import hashlib, json, sys
import engine.sim
from engine.config import Config
from engine.export import chunks
from engine.run import records
out = {"compiled": engine.sim.__file__.endswith(".so"), "digests": {}}
for scenario, policy, version, vcpus in json.loads(sys.argv[1]):
    config = Config(scenario=scenario, policy=policy, module_version=version, vcpus=vcpus, seed=5)
    for fmt in ("jsonl", "csv", "chrome"):
        text = "".join(chunks(fmt, records(config, None, %d)))
        out["digests"][f"{scenario}/{policy}/{fmt}"] = hashlib.sha1(text.encode()).hexdigest()
print(json.dumps(out))
""" % END_NS


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: the mypyc build cannot be made here")
    pytest.importorskip("mypyc")
    src = tmp_path_factory.mktemp("src")
    for name in ("engine", "app", "static"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    target = tmp_path_factory.mktemp("compiled")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
         "--disable-pip-version-check", ".", "-t", str(target)],
        cwd=src, env={**os.environ, "TDX_CONTENTION_MYPYC": "1"},
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return target


def test_compiled_engine_writes_byte_identical_logs(compiled_tree: Path) -> None:
    """Every format of three scenario/policy/module cases hashes the same compiled and pure."""
    probe = subprocess.run([sys.executable, "-c", PROBE, json.dumps(CASES)], cwd=compiled_tree,
                           env={**os.environ, "PYTHONPATH": str(compiled_tree)},
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    assert got["compiled"], "the build produced no extension modules"
    for scenario, policy, version, vcpus in CASES:
        config = Config(scenario=scenario, policy=policy, module_version=version, vcpus=vcpus,
                        seed=5)
        for fmt in ("jsonl", "csv", "chrome"):
            want = hashlib.sha1(export_text(config, END_NS, fmt).encode()).hexdigest()
            assert got["digests"][f"{scenario}/{policy}/{fmt}"] == want, (scenario, policy, fmt)


# Scenario files that exercise the fault and zap mechanics (frozen SPTEs, upstream's
# held BUSY records, memslot deletion, invalidation windows), under two policies each.
FILES = ["examples/frozen_spte_race.toml", "examples/invalidation_retry.toml",
         "examples/zero_step_selftest.toml", "examples/memslot_vs_invalidation.toml",
         "examples/memslot_deadlock.toml", "examples/build_tdr_race.toml",
         "examples/huge_demote_ignores_busy.toml", "examples/accept_vs_aug.toml",
         "examples/busy_injection.toml"]
# upstream_6_17: the stalled memslot deletion (faults asleep) and the unserialised build.
FILE_POLICIES = ("upstream", "bounded", "upstream_6_17")
FILE_PROBE = """
import hashlib, json, sys
from engine.export import chunks
from engine.run import records
from engine.scenario import load
out = {}
for path in json.loads(sys.argv[1]):
    sc = load(path)
    for policy in json.loads(sys.argv[2]):
        text = "".join(chunks("jsonl", records(sc.config(policy=policy), sc, 1_000_000)))
        out[f"{path}/{policy}"] = hashlib.sha1(text.encode()).hexdigest()
print(json.dumps(out))
"""


def test_compiled_engine_runs_scenario_files_identically(compiled_tree: Path) -> None:
    """The example scenario files give the same log compiled and pure, under `upstream`
    (local retry, held BUSY records), `bounded` (the wrapper, re-entry) and
    `upstream_6_17` (a stalled deletion's sleeping faults, the unserialised build)."""
    from engine.run import records
    from engine.scenario import load

    paths = [str(ROOT / f) for f in FILES]
    probe = subprocess.run([sys.executable, "-c", FILE_PROBE, json.dumps(paths),
                            json.dumps(FILE_POLICIES)],
                           cwd=compiled_tree, env={**os.environ, "PYTHONPATH": str(compiled_tree)},
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    for path in paths:
        sc = load(path)
        for policy in FILE_POLICIES:
            text = "".join(chunks("jsonl", records(sc.config(policy=policy), sc, 1_000_000)))
            assert got[f"{path}/{policy}"] == hashlib.sha1(text.encode()).hexdigest(), (
                path, policy)


PERFETTO_PROBE = """
import hashlib, sys
import engine.perfetto
from engine.config import Config
from engine.export import encode
from engine.run import records
config = Config(scenario="conversion", seed=5)
data = b"".join(encode("perfetto", records(config, None, %d), config.to_dict()))
print(engine.perfetto.__file__.endswith(".so"), hashlib.sha1(data).hexdigest())
""" % END_NS


def test_compiled_perfetto_writer_writes_the_same_trace(compiled_tree: Path) -> None:
    """The compiled Perfetto writer's trace is byte for byte the pure one's."""
    pytest.importorskip("perfetto")
    from engine.export import encode
    from engine.run import records

    probe = subprocess.run([sys.executable, "-c", PERFETTO_PROBE], cwd=compiled_tree,
                           env={**os.environ, "PYTHONPATH": str(compiled_tree)},
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    compiled, digest = probe.stdout.split()
    assert compiled == "True"
    config = Config(scenario="conversion", seed=5)
    data = b"".join(encode("perfetto", records(config, None, END_NS), config.to_dict()))
    assert digest == hashlib.sha1(data).hexdigest()
