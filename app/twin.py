"""Compare live: a twin of the current run with some live fields pinned, in lockstep with it."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from app.liverun import LiveRun, Recipe
from app.metrics import TWIN
from engine.config import check_field
from engine.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.store import Store

# What a twin may differ in. Speed is live too, but the twin runs at its run's pace.
COMPARE_FIELDS = ("policy", "retry_max", "zero_step")


def check_changes(body: Any) -> dict[str, Any]:
    """The changes a PUT /api/compare body asks for; ConfigErrors naming each bad field."""
    if not isinstance(body, dict) or not body:
        raise ConfigErrors([ConfigError("body", "must be a JSON object naming at least one of "
                                                + ", ".join(COMPARE_FIELDS))])
    errors = []
    for name, value in body.items():
        if name == "speed":
            errors.append(ConfigError(name, "the twin runs in lockstep with the current run; "
                                            "compare " + ", ".join(COMPARE_FIELDS)))
        elif name not in COMPARE_FIELDS:
            errors.append(ConfigError(name, "not a field a twin can differ in; accepted: "
                                            + ", ".join(COMPARE_FIELDS)))
        elif (problem := check_field(name, value)) is not None:
            errors.append(problem)
    if errors:
        raise ConfigErrors(errors)
    return {k: body[k] for k in COMPARE_FIELDS if k in body}


class Twin:
    """The current run's twin: its recipe with `changes` pinned, simulated to the same time.

    It starts from simulated time 0 and replays the run's control timeline (without the
    pinned fields) while it catches up; after that each live change reaches both runs at
    the same simulated time. Its record is a run of its own, so a replay of it (config
    plus timeline) gives exactly its records.
    """

    def __init__(self, main: LiveRun, changes: dict[str, Any]) -> None:
        self.changes = dict(changes)
        self.of = main.run_id
        config = main.initial.with_changes(changes)
        self.run = LiveRun(config, main.scenario, main.record.scenario_toml,
                           twin_of=main.run_id, bin_ns=main.bins.width_ns)
        self._pending: deque[tuple[int, dict[str, Any]]] = deque()
        for t_ns, change in main.record.timeline:
            self.control(t_ns, change)

    def own(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The part of a live change the twin takes: its pinned fields stay as they are."""
        return {k: v for k, v in changes.items() if k not in self.changes}

    def control(self, t_ns: int, changes: dict[str, Any]) -> None:
        """The run changed live fields at t_ns: the twin does the same when it gets there."""
        own = self.own(changes)
        if own:
            self._pending.append((t_ns, own))
            self._apply_due()

    def behind(self, t_ns: int) -> bool:
        return self.run.sim.now < t_ns

    def catch_up(self, t_ns: int, slice_ns: int) -> None:
        """One engine slice towards `t_ns`, stopping at the next control in the timeline."""
        end = self.run.step_end(t_ns, slice_ns)
        if self._pending:
            end = min(end, self._pending[0][0])
        self.run.advance(end)
        self._apply_due()

    def _apply_due(self) -> None:
        run = self.run
        while self._pending and self._pending[0][0] <= run.sim.now:
            _, change = self._pending.popleft()
            run.apply(change)

    def info(self, main_ns: int) -> dict[str, Any]:
        """GET /api/compare's answer while comparing (`main_ns`: where the run is)."""
        return {"on": True, "changes": self.changes, "run_id": self.run.run_id,
                "twin_of": self.of, "catching_up": self.behind(main_ns)}


class Comparing:
    """The runner's compare commands, and what names the run or its twin (runner thread).

    A part of app.runner.Runner kept here beside the twin it drives; the attributes are
    the runner's.
    """

    run: LiveRun
    twin: Twin | None
    compare: dict[str, Any] | None
    store: Store
    metrics: Metrics
    state: str

    def _broadcast(self) -> None:
        raise TypeError(f"{type(self).__name__}: Comparing is a part of app.runner.Runner, "
                        "which broadcasts the state")

    def _current(self) -> dict[str, Any]:
        listings = {self.run.run_id: self.run.settle().listing()}
        if self.twin is not None:
            listings[self.twin.run.run_id] = self.twin.run.settle().listing()
        return {"run_id": self.run.run_id, "state": self.state,
                "config": self.run.sim.config.to_dict(), "listings": listings}

    def events_of(self, run_id: str) -> int | None:
        """How many records the live run (or twin) `run_id` has handed out, else None."""
        for run in (self.run, self.twin.run if self.twin is not None else None):
            if run is not None and run.run_id == run_id:
                return run.tally.events
        return None

    def _recipe(self, run_id: str | None) -> Recipe | None:
        if run_id is None or run_id == self.run.run_id:
            return self.run.recipe()
        if self.twin is not None and run_id == self.twin.run.run_id:
            return self.twin.run.recipe()
        return None

    # -- compare -----------------------------------------------------------------------
    def _compare_on(self, body: Any) -> dict[str, Any]:
        self.compare = check_changes(body)  # raises before anything changes
        self._start_twin()
        self._broadcast()
        return self._compare_info()

    def _compare_off(self) -> dict[str, Any]:
        if self.twin is not None:
            self.store.save_run(self.twin.run.settle())
        self.twin = None
        self.compare = None
        self.metrics.remove(TWIN)
        self._broadcast()
        return self._compare_info()

    def compare_snapshot(self) -> dict[str, Any]:
        """The compare state for a hello (read on the loop: a snapshot of two references)."""
        twin, run = self.twin, self.run
        return twin.info(run.sim.now) if twin is not None else {"on": False, "changes": {},
                                                                "run_id": None}

    def _compare_info(self) -> dict[str, Any]:
        return self.compare_snapshot()

    def _start_twin(self) -> None:
        """A twin of the current run with `self.compare` pinned (replacing any twin)."""
        assert self.compare is not None
        if self.twin is not None:
            self.store.save_run(self.twin.run.settle())
        self.twin = Twin(self.run, self.compare)
        self.metrics.remove(TWIN)  # a new twin's counts start from zero
        self.metrics.set_config(self.twin.run.sim.config, run=TWIN, run_id=self.twin.run.run_id)
        self.store.save_run(self.twin.run.settle())
        self.metrics.set_config(self.twin.run.sim.config, run=TWIN, run_id=self.twin.run.run_id)
