"""The runner: owns the live simulation in a worker thread, paced to `speed`, one frame a tick.

Only the runner thread touches the simulation. Routes hand it commands (plain callables)
through a queue and await their results, so every control is applied between two
`run_until` calls, at an exact simulated time, and recorded in the run's timeline.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from app.hub import Hub
from app.liverun import LiveRun, Recipe
from app.metrics import TWIN, Metrics
from app.pace import Pace
from app.scenarios import Catalogue
from app.schema import State
from app.settings import Settings
from app.store import Store, StoreError
from app.supervise import RunnerUnavailable, Supervisor
from app.twin import Comparing, Twin
from engine import afford
from engine.config import FIELDS, LIVE_FIELDS, Config, check_field
from engine.errors import ConfigErrors, EngineError

log = logging.getLogger(__name__)
T = TypeVar("T")
RUNNING, PAUSED = "running", "paused"
SLICE_WALL_S = 0.004  # aim for engine slices this long, so commands wait little
# Each tick opens with this share of quiet for the event loop (sending the frame just
# published, answering requests): a thread running Python flat out would otherwise hold
# the GIL and make every socket write of the loop wait for a switch interval.
QUIET_SHARE = 0.25
MIN_SLICE_NS, MAX_SLICE_NS = 1_000, 50_000_000
# A tick asks for at most this many bins of simulated time: beyond it the page's window
# (600 bins) would scroll by in a few frames. The pace tile then shows the shortfall.
MAX_BINS_PER_TICK = 200

__all__ = ["Recipe", "Runner"]


class Runner(Comparing):
    """Start, pause, reset, live changes and new runs; frames to the hub; records to the store."""

    def __init__(self, settings: Settings, store: Store, catalogue: Catalogue, hub: Hub,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.catalogue = catalogue
        self.hub = hub
        self.metrics = metrics
        self.interval_s = settings.frame_interval_ms / 1000
        self.state = PAUSED
        self._commands: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._commands = queue.Queue()
        self._stopping = threading.Event()
        self._slice_ns = 100_000
        self._target_ns: int | None = None  # where this tick's slices aim, while running
        self._persisted_at = 0.0
        self._pace = Pace()
        self.pace: dict[str, Any] = {}
        self.compare: dict[str, Any] | None = None  # what the twin changes, while comparing
        self.twin: Twin | None = None
        self.error: str | None = None  # why the run was paused by a failure, shown to users
        self.supervisor = Supervisor(settings.call_timeout_s, settings.restart_delay_s)
        self.run = self._open_run(self._resumed_config())
        self._thread = threading.Thread(
            target=self.supervisor.run, args=(self._main, self._fail, self._stopping),
            name="runner", daemon=True)
        self.supervisor.thread = self._thread

    # -- the async face, for routes ---------------------------------------------------
    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the runner thread between two engine steps; its result or error.
        RunnerUnavailable when the runner is down or does not answer in time: a route
        never waits for ever on a runner that is stuck or gone."""
        if (down := self.down()) is not None:
            raise RunnerUnavailable(f"the runner is down: {down}")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._commands.put((fn, future))
        return await self.supervisor.wait(future)

    def down(self) -> str | None:
        """Why the runner cannot take commands now (GET /healthz), or None."""
        return self.supervisor.down()

    async def start(self) -> dict[str, Any]:
        return await self.call(lambda: self._set_state(RUNNING))

    async def pause(self) -> dict[str, Any]:
        return await self.call(lambda: self._set_state(PAUSED))

    async def reset(self) -> dict[str, Any]:
        return await self.call(self._reset)

    async def patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        return await self.call(lambda: self._patch(changes))

    async def stats(self) -> dict[str, Any]:
        return await self.call(self._stats)

    async def current(self) -> dict[str, Any]:
        """run_id, state, config and the listings of the run and its twin, consistent."""
        return await self.call(self._current)

    async def recipe(self, run_id: str | None = None) -> Recipe | None:
        """The current run's recipe, or that of the live run (or twin) named `run_id`."""
        return await self.call(lambda: self._recipe(run_id))

    def events_of(self, run_id: str) -> int | None:
        """How many records the live run (or twin) `run_id` has so far, to size its
        export; None for a run that is not live (read on the loop: one int)."""
        for live in (self.run, self.twin.run if self.twin is not None else None):
            if live is not None and live.run_id == run_id:
                return live.tally.events
        return None

    async def compare_on(self, body: Any) -> dict[str, Any]:
        return await self.call(lambda: self._compare_on(body))

    async def compare_off(self) -> dict[str, Any]:
        return await self.call(self._compare_off)

    async def compare_info(self) -> dict[str, Any]:
        return await self.call(self._compare_info)

    # -- thread lifetime ---------------------------------------------------------------
    def start_thread(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and store the current run where it got to (blocking, but never
        for long: a thread stuck in an engine step is left behind, it is a daemon)."""
        self._stopping.set()
        self._commands.put((lambda: None, concurrent.futures.Future()))
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("runner: still in an engine step at shutdown; run %s kept as last "
                        "stored", self.run.run_id)
            return
        try:
            self._persist()
        except StoreError as exc:
            log.error("runner: could not store run %s at shutdown: %s", self.run.run_id, exc)

    def _fail(self, exc: Exception) -> None:
        """Pause the run because of `exc`; the error goes to the page and GET /api/stats."""
        log.error("runner: run %s paused: %s", self.run.run_id, exc, exc_info=exc)
        self.error = f"{type(exc).__name__}: {exc}"
        self._target_ns = None
        self.state = PAUSED
        if not isinstance(exc, StoreError):
            try:
                self._persist()
            except StoreError as store_exc:
                self.error += f"; and the run could not be stored: {store_exc}"
        self._broadcast()

    def _main(self) -> None:
        deadline = time.monotonic() + self.interval_s
        work_from = deadline - self.interval_s * (1 - QUIET_SHARE)
        while not self._stopping.is_set():
            self.supervisor.beat()
            self._run_commands(block_s=0)
            now = time.monotonic()
            if now >= deadline:
                self._end_tick(now)
                deadline += self.interval_s
                if deadline <= now:  # fell behind by a whole tick: do not burst frames
                    deadline = now + self.interval_s
                work_from = deadline - self.interval_s * (1 - QUIET_SHARE)
            elif (self.state == RUNNING and self._target_ns is not None
                  and self.run.sim.now < self._target_ns):
                if now >= work_from:
                    self._step(self._target_ns)
                else:
                    self._run_commands(block_s=work_from - now)
            else:
                self._run_commands(block_s=deadline - now)

    def _run_commands(self, block_s: float) -> None:
        try:
            fn, future = (self._commands.get(timeout=block_s) if block_s > 0
                          else self._commands.get_nowait())
        except queue.Empty:
            return
        while True:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except StoreError as exc:  # disk full, say: pause, and tell the route
                    self._fail(exc)
                    future.set_exception(exc)
                except EngineError as exc:  # bad input: the route answers 4xx
                    future.set_exception(exc)
                except Exception as exc:  # a bug: pause the run, the route answers 503
                    self._fail(exc)
                    future.set_exception(RunnerUnavailable(f"the runner failed: {self.error}; "
                                                           "the run is paused"))
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return

    # -- engine steps and frames ---------------------------------------------------------
    def _step(self, target_ns: int) -> None:
        """One engine slice: the twin's while it catches up, else both runs to one time."""
        run, twin = self.run, self.twin
        lead = twin.run if twin is not None and twin.behind(run.sim.now) else run
        start_ns = lead.sim.now
        began = time.perf_counter()
        try:
            if twin is not None and lead is twin.run:
                twin.catch_up(run.sim.now, self._slice_ns)
            else:
                end_ns = run.step_end(target_ns, self._slice_ns)
                run.advance(end_ns)
                if twin is not None:  # lockstep: the same slice, so the same bin edges
                    twin.run.advance(end_ns)
        except Exception as exc:  # a broken invariant or a bug: keep serving, stop this run
            self._fail(exc)
            return
        took = time.perf_counter() - began
        step_ns = lead.sim.now - start_ns
        if step_ns * 2 >= self._slice_ns:  # near a whole slice (bin edges cut some short)
            wanted = int(step_ns * SLICE_WALL_S / max(took, 1e-6))
            self._slice_ns = max(MIN_SLICE_NS, min(MAX_SLICE_NS, (self._slice_ns + wanted) // 2))

    def _begin_tick(self) -> None:
        run = self.run
        per_tick_ns = max(1, int(run.sim.config.speed * 1000 * self.interval_s))
        self._target_ns = run.sim.now + min(per_tick_ns, MAX_BINS_PER_TICK * run.bins.width_ns)

    def _end_tick(self, wall: float) -> None:
        if self._target_ns is not None:
            # Stored before it is shown: a kill loses at most the frame being built.
            if wall - self._persisted_at >= self.settings.persist_interval_s:
                try:
                    self._persist()
                except StoreError as exc:  # disk full, say: pause the run, keep serving
                    self._fail(exc)
            self._publish_frame(wall)
        if self.state == RUNNING:
            self._begin_tick()

    def _publish_frame(self, wall: float) -> None:
        """The frame of what both runs simulated since the last one, even if short of a tick."""
        self._target_ns = None
        run = self.run
        self.pace = self._pace.tick(wall, run.sim.now, run.sim.config.speed)
        run.lagging = self.pace["lagging"]
        twin = None
        if self.twin is not None:
            behind = self.twin.behind(run.sim.now)
            twin_message, twin_part = self.twin.run.frame(behind)
            self.metrics.add(twin_part.tally, run=TWIN, sim_ns=self.twin.run.sim.now)
            self.metrics.set_config(self.twin.run.sim.config, run=TWIN)  # its live changes
            body = twin_message.model_dump(exclude={"type", "twin", "pace", "sent_at"})
            twin = {**body, "changes": self.twin.changes, "catching_up": behind}
        message, part = run.frame(run.lagging, pace=self.pace, twin=twin)
        self.metrics.add(part.tally, sim_ns=run.sim.now)
        self.hub.publish_threadsafe(message.model_dump_json())

    def _flush_tick(self) -> None:
        """Send what the tick simulated so far, before the run or its state changes."""
        if self._target_ns is not None:
            self._publish_frame(time.monotonic())

    # -- commands (runner thread) ------------------------------------------------------
    def _set_state(self, state: str) -> dict[str, Any]:
        if state != self.state:
            if state == PAUSED:
                self._flush_tick()
            self.state = state
            if state == RUNNING:
                self._pace.restart()
                self.error = None
                self._begin_tick()
            self._persist()
            self._broadcast()
        return {"state": self.state, "run_id": self.run.run_id}

    def _reset(self) -> dict[str, Any]:
        self._flush_tick()
        self.state = PAUSED
        if self.run.untouched:  # nothing to reset: a new run would only be an empty one
            self._broadcast()
        else:
            self._new_run(self.run.sim.config)  # with the live changes made so far
        return {"state": self.state, "run_id": self.run.run_id}

    def _patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        names = self.catalogue.names()
        errors = [e for k, v in changes.items() if (e := check_field(k, v, names))]
        if errors:
            raise ConfigErrors(errors)
        current = self.run.sim.config
        if changes.get("scenario", current.scenario) != current.scenario:
            changes = {**self.catalogue.td_defaults(current.scenario, changes["scenario"]),
                       **changes}
        new = current.with_changes(changes)
        if any(getattr(new, k) != getattr(current, k) for k in FIELDS if k not in LIVE_FIELDS):
            # A different TD: a new run, in the state the old one was in. Its cost is
            # checked before the old run's tick is touched: a 422 changes nothing.
            afford.check(self.catalogue.get(new.scenario)[0], new.vcpus, new.scenario)
            self._flush_tick()
            self._new_run(new)
            if self.state == RUNNING:
                self._begin_tick()
            return new.to_dict()
        live = {k: getattr(new, k) for k in LIVE_FIELDS
                if k in changes and getattr(new, k) != getattr(current, k)}
        if live:
            # Durable before it takes effect: stored first, so a PATCH that answers 200 is
            # in the history, and one that fails to store (503) changed nothing.
            self.run.record.timeline.append((self.run.sim.now, live))
            try:
                self._persist()
            except StoreError:
                self.run.record.timeline.pop()
                raise
            self.run.apply(live, recorded=True)
            if self.twin is not None:
                self.twin.control(self.run.sim.now, live)
                self.metrics.set_config(self.twin.run.sim.config, run=TWIN)
            self.metrics.set_config(new)
            self._broadcast()
        return self.run.sim.config.to_dict()

    def _stats(self) -> dict[str, Any]:
        twin = None
        if self.twin is not None:
            twin = {**self.twin.run.summary(), **self.twin.info(self.run.sim.now)}
        return {**self.run.summary(), "run_id": self.run.run_id, "state": self.state,
                "lagging": self.run.lagging and self.state == RUNNING, "error": self.error,
                "pace": self.pace, "bin_ns": self.run.bins.width_ns, "twin": twin}

    # -- runs --------------------------------------------------------------------------
    def _resumed_config(self) -> Config:
        """The config the newest run had when the server stopped (its start plus its live
        changes), so a restarted server comes back as the user left it, paused; the
        defaults when there is no run, or when it no longer opens (a scenario gone, or
        limits that refuse it now)."""
        newest = next((r for r in self.store.runs() if r.twin_of is None), None)
        if newest is None:
            return Config()
        values = dict(newest.config)
        for _, changes in newest.timeline:
            values.update(changes)
        try:
            config = Config().with_changes(values)
            scenario, _ = self.catalogue.get(config.scenario)
            afford.check(scenario, config.vcpus, config.scenario)
        except EngineError as exc:
            log.warning("starting from the defaults: the last run's config does not open: %s", exc)
            return Config()
        return config

    def _open_run(self, config: Config) -> LiveRun:
        scenario, toml = self.catalogue.get(config.scenario)
        afford.check(scenario, config.vcpus, config.scenario)  # before any of it is built
        run = LiveRun(config, scenario, toml)
        self.store.save_run(run.settle())
        self.metrics.set_config(config, run_id=run.run_id)
        return run

    def _new_run(self, config: Config) -> None:
        self._persist()
        self.run = self._open_run(config)
        self._pace.restart()
        self.error = None
        if self.compare is not None:
            self._start_twin()
        self._broadcast()

    def _persist(self) -> None:
        """Store the run as it is now. A StoreError reaches _run_commands (the command's
        route answers 503) or _end_tick; either pauses the run (_fail)."""
        self._persisted_at = time.monotonic()
        self.store.save_run(self.run.settle())
        if self.twin is not None:
            self.store.save_run(self.twin.run.settle())

    def _broadcast(self) -> None:
        message = State(run_id=self.run.run_id, state=self.state,  # type: ignore[arg-type]
                        config=self.run.sim.config.to_dict(), lagging=self.run.lagging,
                        compare=self._compare_info(), controls=self.run.controls(),
                        bin_ns=self.run.bins.width_ns, error=self.error)
        self.hub.publish_threadsafe(message.model_dump_json())
