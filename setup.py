"""Build hook: the engine's hot modules compiled with mypyc into the wheel.

The metadata lives in pyproject.toml. A wheel build (`pip install .`, the README's
set-up command, or `pip wheel .`) compiles the modules below with mypyc from the same
sources, about 4x the pure-Python speed with byte-identical records (docs/performance.md).
An editable install (`pip install -e .`, the test set-up) runs the .py sources, so that
edits take effect: a compiled module next to its source would shadow it.

TDX_CONTENTION_MYPYC in the environment at build time: "1" compiles and fails the build
if it cannot; "0" never compiles; unset compiles a wheel when it can and otherwise,
with a warning, installs the pure-Python engine (no C compiler, say).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from setuptools import setup

# The per-attempt path and what it calls; config, params, scenario and run stay Python.
COMPILED = [
    "engine/records.py",
    "engine/status.py",
    "engine/pagebytes.py",
    "engine/actor.py",
    "engine/locks.py",
    "engine/module.py",
    "engine/hostlocks.py",
    "engine/zerostep.py",
    "engine/policies.py",
    "engine/guest.py",
    "engine/heap.py",
    "engine/sim.py",
    "engine/fault.py",
    "engine/prefault.py",  # its actor derives from fault.py's compiled handler
    "engine/guestrun.py",
    "engine/vcpu.py",
    "engine/huge.py",
    "engine/accept2m.py",
    "engine/zap.py",
    "engine/summary.py",
    "engine/tracks.py",
    "engine/chrome.py",
    "engine/perfetto.py",
    "engine/export.py",
    "engine/run.py",
]



def _ext_modules() -> list[Any]:
    wanted = os.environ.get("TDX_CONTENTION_MYPYC", "")
    editable = "editable_wheel" in sys.argv
    if wanted == "0" or (wanted != "1" and editable):
        return []
    try:
        from mypyc.build import mypycify

        # Modules outside COMPILED are type-checked only for what the compiled ones use.
        modules = mypycify(["--follow-imports=silent", *COMPILED], opt_level="3")
    except Exception as exc:  # mypy missing or too old, a type error
        if wanted == "1":
            raise
        warnings.warn(f"tdx-contention: engine not compiled ({exc}); installing the "
                      "pure-Python engine", stacklevel=1)
        return []
    if wanted != "1":
        for module in modules:
            module.optional = True  # a failed C build leaves the pure-Python engine
    return list(modules)


setup(ext_modules=_ext_modules())
