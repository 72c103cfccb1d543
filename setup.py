"""Build hook: the engine's hot modules compiled with mypyc, on request.

By default this is a plain setuptools build (the metadata lives in pyproject.toml) and
the engine runs from its .py sources. With TDX_CONTENTION_MYPYC=1 in the environment at
build time, the modules below are compiled from the same sources with mypyc (mypy must
be importable: build with `pip install --no-build-isolation`, or add mypy to the build
requirements). Records are byte-identical either way; docs/performance.md has figures.

    TDX_CONTENTION_MYPYC=1 pip install --no-build-isolation . -t /tmp/compiled
"""

from __future__ import annotations

import os

from setuptools import setup

# The per-attempt path and what it calls; config, params, scenario and run stay Python.
COMPILED = [
    "engine/records.py",
    "engine/status.py",
    "engine/pagebytes.py",
    "engine/locks.py",
    "engine/module.py",
    "engine/hostlocks.py",
    "engine/zerostep.py",
    "engine/policies.py",
    "engine/guest.py",
    "engine/sim.py",
    "engine/vcpu.py",
    "engine/zap.py",
    "engine/summary.py",
    "engine/export.py",
    "engine/run.py",
]

ext_modules = []
if os.environ.get("TDX_CONTENTION_MYPYC") == "1":
    from mypyc.build import mypycify

    # Modules outside COMPILED are type-checked only for what the compiled ones use.
    ext_modules = mypycify(["--follow-imports=silent", *COMPILED], opt_level="3")

setup(ext_modules=ext_modules)
