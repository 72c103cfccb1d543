"""The scenario catalogue the server offers: the built-in ones plus those posted to it."""

from __future__ import annotations

import threading
import time
from typing import Any

from app.store import Store
from engine.config import Config
from engine.errors import ScenarioError
from engine.scenario import Scenario, builtin_scenario, builtin_scenarios, parse


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
            except ScenarioError:  # the engine got stricter since; keep serving the rest
                continue

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

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            posted = [s for s, _ in self._posted.values()]
        return ([{"name": s.name, "description": s.description, "builtin": True, "td": s.td}
                 for s in self._builtin.values()]
                + [{"name": s.name, "description": s.description, "builtin": False, "td": s.td}
                   for s in posted])
