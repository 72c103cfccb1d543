"""Determinism: same config and seed, same bytes; replaying a control timeline, same log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config
from engine.export import jsonl_lines
from engine.run import run
from engine.scenario import builtin_scenario
from engine.sim import Simulation, replay
from tests.engine.support import export_text

GOLDEN = Path(__file__).parent / "golden" / "zero_step_seed1_2ms.jsonl"
GOLDEN_END_NS = 2_000_000


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "chrome"])
@pytest.mark.parametrize("config", [
    Config(),
    Config(scenario="conversion", policy="upstream", seed=7),
    Config(scenario="boot", module_version="1.0", vcpus=12, policy="backoff", seed=3),
    Config(scenario="conversion", policy="vmm_lock", retry_max=2, zero_step=False, seed=11),
], ids=["default", "conversion-upstream", "boot-10-backoff", "conversion-vmm"])
def test_same_config_and_seed_give_identical_bytes(config: Config, fmt: str) -> None:
    """Two runs of one config and seed export byte-identical logs in every format."""
    first = export_text(config, 3_000_000, fmt)
    second = export_text(config, 3_000_000, fmt)
    assert first == second
    assert len(first) > 1000


def test_summary_path_and_records_path_write_the_same_log() -> None:
    """engine.run.run's written log equals the log built straight from engine.run.records."""
    import io

    out = io.StringIO()
    run(Config(scenario="conversion"), None, 3_000_000, out, "jsonl")
    assert out.getvalue() == export_text(Config(scenario="conversion"), 3_000_000, "jsonl")


def test_different_seeds_differ() -> None:
    """The seed matters: two seeds give different logs (the guest's random choices)."""
    assert export_text(Config(seed=1), 1_000_000, "jsonl") != export_text(
        Config(seed=2), 1_000_000, "jsonl")


def _live(config: Config, end_ns: int, slices: list[int],
          controls: dict[int, dict[str, Any]]) -> tuple[Simulation, list[Any], list[Any]]:
    """Drive a Simulation by hand in uneven slices, applying controls at slice ends."""
    sim = Simulation(config, builtin_scenario(config.scenario))
    recs: list[Any] = []
    timeline: list[tuple[int, dict[str, Any]]] = []
    t = 0
    i = 0
    while t < end_ns:
        t = min(t + slices[i % len(slices)], end_ns)
        i += 1
        recs += sim.run_until(t)
        if t in controls:
            sim.apply(controls[t])
            timeline.append((sim.now, controls[t]))
    return sim, recs, timeline


SLICES = [37_313, 250_001, 3_999, 111_111, 90_000]


def _control_times() -> list[int]:
    t, out = 0, []
    for i in range(40):
        t += SLICES[i % len(SLICES)]
        out.append(t)
    return out


@pytest.mark.parametrize("scenario", ["zero-step", "conversion"])
@pytest.mark.parametrize("finish", [True, False])
def test_replay_of_a_control_timeline_gives_the_live_log(scenario: str, finish: bool) -> None:
    """Replaying (config, recorded controls, end) gives exactly the live run's records,
    with and without closing the records still open at the end."""
    times = _control_times()
    controls = {
        times[2]: {"retry_max": 0},
        times[5]: {"policy": "upstream", "zero_step": False},
        times[9]: {"policy": "vmm_lock", "retry_max": 3},
        times[13]: {"zero_step": True, "speed": 250.0},
        times[17]: {"policy": "bounded"},
    }
    end_ns = times[20] + 12_345
    config = Config(scenario=scenario, seed=5)
    sim, live, timeline = _live(config, end_ns, SLICES, controls)
    assert len(timeline) == 5
    if finish:
        live += sim.finish()
    replayed = list(replay(config, timeline, end_ns, builtin_scenario(config.scenario), finish=finish))
    assert [tuple(r) for r in replayed] == [tuple(r) for r in live]
    assert "".join(jsonl_lines(replayed)) == "".join(jsonl_lines(live))
    control = [r for r in live if r[2] == "control"]
    assert [(r[0], r[9]) for r in control] == [(t, dict(sorted(c.items()))) for t, c in timeline]


def test_controls_change_the_log() -> None:
    """A control change is not a no-op: the log after it differs from the run without it."""
    config = Config(scenario="zero-step", seed=5)
    base = list(replay(config, [], 1_500_000, builtin_scenario(config.scenario)))
    changed = list(replay(config, [(500_000, {"policy": "none"})], 1_500_000,
                          builtin_scenario(config.scenario)))
    assert base != changed
    assert [r for r in changed if r[2] == "control"] == [
        (500_000, 0, "control", "user", None, None, None, None, None, {"policy": "none"})]


def test_golden_zero_step_seed1_first_2ms() -> None:
    """The default config's first 2 ms export exactly the committed golden JSONL."""
    text = export_text(Config(), GOLDEN_END_NS, "jsonl")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8", newline="")
    expected = GOLDEN.read_text(encoding="utf-8")
    if text != expected:
        got, want = text.splitlines(), expected.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                     min(len(got), len(want)))
        pytest.fail(
            f"the event log of the default config (zero-step, seed 1, first 2 ms) changed; "
            f"first difference at line {first + 1} (got {len(got)} lines, golden {len(want)}):\n"
            f"  got:    {got[first] if first < len(got) else '<end>'}\n"
            f"  golden: {want[first] if first < len(want) else '<end>'}\n"
            f"If the change is intended (a model change, not a refactor), regenerate with\n"
            f"  UPDATE_GOLDEN=1 python -m pytest tests/engine/test_determinism.py -k golden\n"
            f"and commit {GOLDEN.relative_to(Path.cwd()) if GOLDEN.is_relative_to(Path.cwd()) else GOLDEN}"
            f" with a message saying why.", pytrace=False)


def test_apply_refuses_non_live_and_bad_values_and_records_nothing() -> None:
    """apply() refuses a non-live field or a bad value, naming it, and changes nothing."""
    from engine.errors import ConfigError, ConfigErrors

    sim = Simulation(Config(), builtin_scenario("zero-step"))
    sim.run_until(100_000)
    with pytest.raises(ConfigError, match="vcpus"):
        sim.apply({"vcpus": 4})
    with pytest.raises(ConfigErrors, match="retry_max"):
        sim.apply({"retry_max": 5000})
    assert sim.config == Config() and sim.retry_max == 16
    assert not [r for r in sim.run_until(200_000) if r[2] == "control"]
