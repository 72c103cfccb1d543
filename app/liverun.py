"""A live run: its simulation, its counts in fixed bins of simulated time, its stored record."""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from app.frames import Counts, Snapshot, calls_since, difference, frame, piece
from app.schema import Frame
from app.store import RunRecord
from engine.config import Config
from engine.run import sim_extras
from engine.scenario import Scenario
from engine.sim import Simulation
from engine.summary import Tally, summary

# A frame carries at most this many bins: the page's window is 600 bins, and a twin that
# catches up from far behind would otherwise send its whole history in one frame.
MAX_PIECES = 600
MIN_BIN_NS, MAX_BIN_NS = 1_000, 10_000_000


@dataclass(frozen=True)
class Recipe:
    """What `engine.sim.replay` needs to regenerate a run's records up to `end_ns`."""

    run_id: str
    config: Config
    scenario: Scenario
    timeline: list[tuple[int, dict[str, Any]]]
    end_ns: int


def bin_width_ns(scenario: Scenario) -> int:
    """A round bin width (1, 2 or 5 x 10^k ns), a thousandth of the scenario's duration:
    100 us for the built-ins' 100 ms. Chosen once per run, so Speed never changes it."""
    raw = max(MIN_BIN_NS, min(MAX_BIN_NS, scenario.duration_us))  # duration_us * 1000 / 1000
    mag: int = 10 ** math.floor(math.log10(raw))
    return next(s * mag for s in (1, 2, 5, 10) if s * mag >= raw)


class Bins:
    """Cuts a run's counts at every multiple of `width_ns` of simulated time.

    The runner stops engine slices at bin edges, so bin k holds exactly the records handed
    out while the simulation went from k * width to (k + 1) * width. A frame carries the
    pieces simulated since the last one: whole bins and the start of the current one,
    which the next frame continues (the page adds pieces of one index together).
    """

    def __init__(self, width_ns: int, start: Snapshot) -> None:
        self.width_ns = width_ns
        self.index = 0
        self._start = start
        self._pieces: list[dict[str, Any]] = []

    @property
    def edge_ns(self) -> int:
        return (self.index + 1) * self.width_ns

    def close(self, snap: Snapshot) -> None:
        """The simulation reached this bin's edge: its last piece is complete."""
        self._pieces.append(piece(self.index, difference(snap, self._start)))
        if len(self._pieces) > MAX_PIECES:
            del self._pieces[0]
        self._start = snap
        self.index += 1

    def take(self, snap: Snapshot, now_ns: int) -> list[dict[str, Any]]:
        """The pieces since the last take, the current bin's so far included (if begun)."""
        out = self._pieces
        if now_ns > self.index * self.width_ns:
            out.append(piece(self.index, difference(snap, self._start)))
        self._pieces = []
        self._start = snap
        return out[-MAX_PIECES:]


class LiveRun:
    """A run the runner advances: simulation, counts, bins, and its stored record."""

    def __init__(self, config: Config, scenario: Scenario, scenario_toml: str | None,
                 *, twin_of: str | None = None, bin_ns: int | None = None) -> None:
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.initial = config
        self.scenario = scenario
        self.sim = Simulation(config, scenario)
        self.counts = Counts()
        self.frames = 0
        self.lagging = False
        start = Snapshot.of(self.counts)
        self.bins = Bins(bin_ns or bin_width_ns(scenario), start)
        self.frame_start = (0, start)  # (t_ns, counts) where the frame being made began
        # completed calls by attempts when retry max or policy last changed: the page's
        # histogram shows the calls since then (a cap drawn over older calls would mislead)
        self.calls_mark: dict[int, int] = {}
        self.record = RunRecord(run_id=run_id, created=time.time(), scenario=config.scenario,
                                config=config.to_dict(), scenario_toml=scenario_toml,
                                twin_of=twin_of)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def tally(self) -> Tally:
        return self.counts.tally

    @property
    def untouched(self) -> bool:
        """Never advanced and never changed: a Reset of it would only add an empty run."""
        return self.sim.now == 0 and not self.record.timeline

    def step_end(self, target_ns: int, slice_ns: int) -> int:
        """Where the next engine slice ends: the target, a slice on, or the bin's edge."""
        return min(target_ns, self.sim.now + slice_ns, self.bins.edge_ns)

    def advance(self, t_ns: int) -> None:
        """Run the engine to `t_ns` (at most the current bin's edge) and count what it did."""
        self.counts.add(self.sim.run_until(t_ns))
        if self.sim.now >= self.bins.edge_ns:
            self.bins.close(Snapshot.of(self.counts))

    def apply(self, live: dict[str, Any], *, recorded: bool = False) -> None:
        """Change live fields now and record the change in the run's timeline (unless the
        caller has already put it there, to store it before it takes effect)."""
        self.sim.apply(live)
        if not recorded:
            self.record.timeline.append((self.sim.now, live))
        if "retry_max" in live or "policy" in live:
            self.calls_mark = dict(self.tally.calls_by_attempts)

    def take_frame(self) -> tuple[int, Counts, list[dict[str, Any]]]:
        """(t0_ns, counts, bin pieces) since the last frame; the next frame starts now."""
        t0_ns, before = self.frame_start
        snap = Snapshot.of(self.counts)
        self.frame_start = (self.sim.now, snap)
        return t0_ns, difference(snap, before), self.bins.take(snap, self.sim.now)

    def frame(self, lagging: bool, **extra: Any) -> tuple[Frame, Counts]:
        """The next `frame` message (and the counts in it): since the last one, in bins."""
        t0_ns, part, pieces = self.take_frame()
        message = frame(self.run_id, self.frames, t0_ns, self.sim.now, part, self.tally, lagging,
                        self.sim.config.retry_max, bins=pieces, bin_ns=self.bins.width_ns,
                        calls_since_change=calls_since(self.tally.calls_by_attempts,
                                                       self.calls_mark), **extra)
        self.frames += 1
        return message, part

    def controls(self) -> list[dict[str, Any]]:
        """The live changes so far, each field as [before, after] (the page's time marks)."""
        config = self.initial.to_dict()
        out = []
        for t_ns, changes in self.record.timeline:
            out.append({"t_ns": t_ns,
                        "changes": {k: [config.get(k), v] for k, v in sorted(changes.items())}})
            config.update(changes)
        return out

    def recipe(self) -> Recipe:
        return Recipe(self.run_id, self.initial, self.scenario, list(self.record.timeline),
                      self.sim.now)

    def summary(self) -> dict[str, Any]:
        return summary(self.sim.config.to_dict(), self.sim.now, self.tally, sim_extras(self.sim))

    def settle(self) -> RunRecord:
        """Bring the stored record up to the simulation's present."""
        self.record.end_ns = self.sim.now
        self.record.summary = self.summary()
        return self.record
