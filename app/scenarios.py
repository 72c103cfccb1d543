"""The scenario catalogue the server offers: the built-in ones plus those posted to it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from app.store import Store
from engine.config import Config
from engine.errors import ScenarioError
from engine.scenario import Scenario, builtin_scenario, builtin_scenarios, parse

log = logging.getLogger(__name__)
MAX_POSTED = 64  # posted scenarios kept; every hello carries their names and descriptions


class ScenarioInUse(Exception):
    """A scenario cannot be deleted: it is built in, or the current run uses it."""


class Catalogue:
    """Scenarios by name. Posted ones are kept in the store and come back after a restart."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._builtin = {s.name: s for s in builtin_scenarios()}
        self._posted: dict[str, tuple[Scenario, str]] = {}
        for name, text in store.scenarios():
            try:
                self._posted[name] = (parse(text, name), text)
            except ScenarioError as exc:  # the engine got stricter since; serve the rest
                log.warning("posted scenario %r is no longer accepted, left out: %s", name,
                            exc.messages[0])

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._builtin) + tuple(self._posted)

    def get(self, name: str) -> tuple[Scenario, str | None]:
        """The scenario and, for a posted one, its TOML text; ScenarioError if unknown."""
        with self._lock:
            if name in self._posted:
                return self._posted[name]
        return builtin_scenario(name), None

    def add(self, text: str) -> Scenario:
        """Parse, check and keep a posted scenario (replacing one of the same name)."""
        scenario = parse(text, "posted scenario")
        if scenario.name in self._builtin:
            raise ScenarioError([f"posted scenario: name: {scenario.name!r} is a built-in "
                                 "scenario; choose another name"])
        with self._lock:
            full = scenario.name not in self._posted and len(self._posted) >= MAX_POSTED
        if full:
            raise ScenarioError([f"posted scenario: name: {MAX_POSTED} posted scenarios are "
                                 "kept already; delete one first (DELETE /api/scenarios/NAME)"])
        self._store.save_scenario(scenario.name, text, time.time())
        with self._lock:
            self._posted[scenario.name] = (scenario, text)
        return scenario

    def td_defaults(self, old_name: str, new_name: str) -> dict[str, Any]:
        """What choosing `new_name` over `old_name` sets: the new scenario's [td] table, and
        the contract's defaults back for fields that only the old one's [td] set (so going
        back to a built-in from a one-vCPU selftest restores 8 vCPUs)."""
        new, _ = self.get(new_name)
        try:
            old_td = self.get(old_name)[0].td
        except ScenarioError:  # the old scenario is gone: nothing of it to undo
            old_td = {}
        defaults = Config()
        return {**{k: getattr(defaults, k) for k in old_td if k not in new.td}, **new.td}
    def delete(self, name: str, in_use: str) -> bool:
        """Forget a posted scenario; False if there is none of that name. ScenarioInUse for
        a built-in one or the one named `in_use` (the current run's)."""
        if name in self._builtin:
            raise ScenarioInUse(f"{name!r} is a built-in scenario; only posted ones can be "
                                "deleted")
        with self._lock:
            if name not in self._posted:
                return False
        if name == in_use:
            raise ScenarioInUse(f"{name!r} is the current run's scenario; choose another "
                                "one first")
        self._store.delete_scenario(name)
        with self._lock:
            self._posted.pop(name, None)
        return True

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            posted = [s for s, _ in self._posted.values()]
        return ([{"name": s.name, "description": s.description, "builtin": True, "td": s.td}
                 for s in self._builtin.values()]
                + [{"name": s.name, "description": s.description, "builtin": False, "td": s.td}
                   for s in posted])
