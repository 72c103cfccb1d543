"""The base of everything with events of its own in a simulation."""

from __future__ import annotations

from typing import Any

from engine.errors import InvariantError


class Actor:
    """Something with events of its own: `sim.post(t, actor, code, arg)` calls
    `actor.dispatch(code, arg)` then. Compiled, that is a native call where `sim.at` with
    a bound method goes through Python's call protocol; the vCPUs' hot events use it."""

    def dispatch(self, code: int, arg: Any) -> None:
        raise InvariantError(f"{type(self).__name__} was posted event {code} but has no "
                             "dispatch of its own")
