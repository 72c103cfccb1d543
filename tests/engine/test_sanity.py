"""A sanity table: what every built-in scenario must show (MODEL.md section 6)."""

from __future__ import annotations

from engine.config import Config
from engine.run import records, run

MS = 1_000_000


def test_boot_one_vcpu_zero_step_off_has_no_busy() -> None:
    """boot with 1 vCPU and zero-step off: nobody to contend with, so no BUSY at all."""
    result = run(Config(scenario="boot", vcpus=1, zero_step=False), None, 20 * MS)
    assert result["attempts"] > 500
    assert result["busy"] == 0 and result["giveups"] == 0 and result["retries"] == 0


def test_zero_step_mitigation_adds_sept_tree_busy() -> None:
    """zero-step with the mitigation on: activations, and more SEPT_TREE BUSY than off."""
    on = run(Config(scenario="zero-step", zero_step=True), None, 20 * MS)
    off = run(Config(scenario="zero-step", zero_step=False), None, 20 * MS)
    assert on["zero_step_activations"] > 0 and off["zero_step_activations"] == 0
    assert on["busy_by_operand"]["SEPT_TREE"] > off["busy_by_operand"]["SEPT_TREE"]


def first_record(config: Config, end_ns: int, kind: str, busy: bool = False) -> int | None:
    for rec in records(config, None, end_ns):
        if rec[2] == kind and (not busy or rec[8] in ("busy", "giveup")):
            return int(rec[0])
    return None


def test_conversion_shows_busy_within_20ms() -> None:
    """conversion, 8 vCPUs: a BUSY SEAMCALL within the first 20 ms."""
    t = first_record(Config(scenario="conversion", vcpus=8), 20 * MS, "seamcall", busy=True)
    assert t is not None and t < 20 * MS


def test_zero_step_shows_activations_within_20ms() -> None:
    """zero-step, 8 vCPUs: a zero-step activation within the first 20 ms."""
    t = first_record(Config(scenario="zero-step", vcpus=8), 20 * MS, "zero_step")
    assert t is not None and t < 20 * MS


def test_boot_module_10_shows_sept_tree_busy_within_20ms() -> None:
    """boot, 32 vCPUs, module 1.0: SEPT_TREE BUSY within the first 20 ms."""
    config = Config(scenario="boot", vcpus=32, module_version="1.0")
    for rec in records(config, None, 20 * MS):
        if rec[6] == "SEPT_TREE":
            assert rec[0] < 20 * MS
            return
    raise AssertionError("no SEPT_TREE BUSY in the first 20 ms")
