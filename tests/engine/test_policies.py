"""KVM's BUSY policies (engine.policies), alone and over whole runs of built-in scenarios."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest

from engine.config import Config
from engine.module import SEPT_WRAPPED
from engine.params import Timing
from engine.policies import GIVE_UP, KICK_RETRY, KVM_BUG, RERUN, make_policy
from engine.status import TDX_ERROR_SEPT_BUSY, TDX_OPERAND_BUSY, TDX_PREVIOUS_TLB_EPOCH_BUSY
from tests.engine.support import calls_by_actor, logical_calls, run_records

SEPT_BUSY = "0x8000020000000092"
AUG, SEPT_ADD = "TDH.MEM.PAGE.AUG", "TDH.MEM.SEPT.ADD"
ZAP_LEAVES = ("TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE")
END_NS = 8_000_000
SEEDS = (1, 2, 3)
T = Timing()
RNG = random.Random(0)


@cache
def _log(scenario: str, policy: str, seed: int, retry_max: int) -> tuple[Any, ...]:
    return tuple(run_records(Config(scenario=scenario, policy=policy, seed=seed,
                                    retry_max=retry_max), END_NS))


def log_of(scenario: str, policy: str, seed: int, retry_max: int = 16) -> list[dict[str, Any]]:
    return list(_log(scenario, policy, seed, retry_max))


# -- the decisions alone ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["bounded", "vmm_lock", "backoff"])
def test_bounded_family_retries_only_sept_tree_busy(name: str) -> None:
    """bounded/vmm_lock/backoff retry exactly BUSY|SEPT_TREE on a wrapped leaf, nothing else."""
    p = make_policy(name)
    assert p.fault_busy(AUG, TDX_ERROR_SEPT_BUSY, 1, 16, T, RNG) >= 0
    assert p.fault_busy(AUG, TDX_OPERAND_BUSY | 0x01, 1, 16, T, RNG) == GIVE_UP
    assert p.fault_busy(AUG, TDX_OPERAND_BUSY | 0xA9, 1, 16, T, RNG) == GIVE_UP
    assert p.fault_busy(AUG, 0x8000020400000092, 1, 16, T, RNG) == GIVE_UP



@pytest.mark.parametrize("name", ["bounded", "vmm_lock", "backoff"])
def test_bounded_era_track_loops_while_busy_with_no_cap(name: str) -> None:
    """v19's tdx_track() re-issued TDH.MEM.TRACK while it returned OPERAND_BUSY, with no
    cap and outside the SEPT wrapper; any other failure is KVM_BUG_ON (MODEL.md 5b)."""
    p = make_policy(name)
    for attempt in (1, 17, 5000):
        assert p.zap_busy("TDH.MEM.TRACK", TDX_OPERAND_BUSY | 0xA9, attempt, 0, T, RNG) == \
            T.retry_gap_ns
    assert p.zap_busy("TDH.MEM.TRACK", TDX_PREVIOUS_TLB_EPOCH_BUSY, 1, 16, T, RNG) == KVM_BUG


@pytest.mark.parametrize("retry_max", [0, 1, 16])
def test_bounded_budget_is_retry_max_retries(retry_max: int) -> None:
    """bounded retries after attempts 1..retry_max and gives up after attempt retry_max+1."""
    p = make_policy("bounded")
    decisions = [p.fault_busy(AUG, TDX_ERROR_SEPT_BUSY, a, retry_max, T, RNG)
                 for a in range(1, retry_max + 2)]
    assert decisions == [T.retry_gap_ns] * retry_max + [GIVE_UP]


@pytest.mark.parametrize("name", ["bounded", "upstream"])
def test_a_busy_vp_enter_is_reentered_with_no_cap(name: str) -> None:
    """A BUSY TDH.VP.ENTER is re-entered at once whatever the attempt and retry_max: v19
    returned EXIT_FASTPATH_REENTER_GUEST, mainline's tdx_vcpu_run EXIT_FASTPATH_EXIT_HANDLED
    (MODEL.md 5b); only the SEPT wrapper's loop has SEAMCALL_RETRY_MAX."""
    p = make_policy(name)
    assert all(p.enter_busy(TDX_ERROR_SEPT_BUSY, a, 0) for a in (1, 2, 17, 1000))
    assert p.enter_busy(TDX_OPERAND_BUSY | 0xA9, 40, 16)


def test_none_never_retries() -> None:
    """none hands every BUSY back, on the fault path, the zap path and VP.ENTER."""
    p = make_policy("none")
    assert p.fault_busy(AUG, TDX_ERROR_SEPT_BUSY, 1, 16, T, RNG) == GIVE_UP
    assert p.zap_busy("TDH.MEM.RANGE.BLOCK", TDX_ERROR_SEPT_BUSY, 1, 16, T, RNG) == GIVE_UP
    assert p.enter_busy(TDX_ERROR_SEPT_BUSY, 1, 16) is False


def test_upstream_fault_path_has_no_cap_zap_path_kicks_once() -> None:
    """upstream: fault path always retries locally; zap path kicks then retries once; a
    second BUSY is a KVM bug."""
    p = make_policy("upstream")
    assert all(p.fault_busy(AUG, TDX_ERROR_SEPT_BUSY, a, 0, T, RNG) == RERUN
               for a in (1, 50, 5000))
    assert p.local_retry and not make_policy("bounded").local_retry
    assert p.zap_busy("TDH.MEM.RANGE.BLOCK", TDX_ERROR_SEPT_BUSY, 1, 0, T, RNG) == KICK_RETRY
    assert p.zap_busy("TDH.MEM.RANGE.BLOCK", TDX_ERROR_SEPT_BUSY, 2, 0, T, RNG) == KVM_BUG


def test_backoff_grows_and_is_capped() -> None:
    """backoff waits between half and 1.5 times an exponentially growing, capped base."""
    p = make_policy("backoff")
    rng = random.Random(7)
    for attempt in range(1, 20):
        base = min(T.backoff_base_ns << (attempt - 1), T.backoff_max_ns)
        delay = p.fault_busy(AUG, TDX_ERROR_SEPT_BUSY, attempt, 64, T, rng)
        assert base // 2 <= delay <= base * 3 // 2


# -- whole runs --------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["conversion", "zero-step"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("retry_max", [0, 1, 16])
def test_bounded_run_caps_attempts_and_retries_only_sept_busy(scenario: str, seed: int,
                                                              retry_max: int) -> None:
    """bounded: no logical call of a wrapped leaf exceeds retry_max+1 attempts, and every
    retry of one follows a BUSY of exactly 0x8000020000000092. (TDH.VP.ENTER and TRACK
    loop with no cap, outside the wrapper: MODEL.md 5b.)"""
    log = log_of(scenario, "bounded", seed, retry_max)
    longest = 0
    for call in logical_calls(log):
        if call[0]["leaf"] not in SEPT_WRAPPED:
            continue
        assert len(call) <= retry_max + 1, call
        longest = max(longest, len(call))
        for prev, rec in zip(call, call[1:], strict=False):
            assert prev["status"] == SEPT_BUSY and prev["outcome"] == "busy", (prev, rec)
        if call[-1]["outcome"] == "giveup" and call[-1]["status"] == SEPT_BUSY:
            assert len(call) == retry_max + 1 or call[-1]["leaf"] == "TDH.MEM.TRACK", call
    # The cap is exercised, not vacuous: some SEPT BUSY ran the whole budget. (In
    # `conversion` the zap holds mmu_lock for write, so no fault-path AUG meets the tree
    # busy there: only `zero-step` exercises the budget.)
    if retry_max <= 1 and scenario == "zero-step":
        assert longest == retry_max + 1
    for rec in log:
        if rec["outcome"] == "busy" and rec["leaf"] in SEPT_WRAPPED:
            assert rec["status"] == SEPT_BUSY, rec
        elif rec["outcome"] == "busy":
            assert rec["leaf"] in ("TDH.VP.ENTER", "TDH.MEM.TRACK"), rec
            assert rec["status"].startswith("0x80000200"), rec
        if rec["outcome"] == "giveup":
            assert rec["leaf"] != "TDH.VP.ENTER", rec


@pytest.mark.parametrize("policy", ["vmm_lock", "backoff"])
def test_bounded_variants_cap_attempts(policy: str) -> None:
    """vmm_lock and backoff keep bounded's budget: at most retry_max+1 attempts, SEPT only."""
    log = log_of("conversion", policy, 1, 1)
    for call in logical_calls(log):
        if call[0]["leaf"] not in SEPT_WRAPPED:
            continue
        assert len(call) <= 2
        assert all(r["status"] == SEPT_BUSY for r in call[:-1])


@pytest.mark.parametrize("scenario", ["conversion", "zero-step"])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_none_run_never_retries(scenario: str, seed: int) -> None:
    """none: no record has attempt > 1, and every BUSY is handed back (outcome giveup)."""
    log = log_of(scenario, "none", seed)
    calls = [r for r in log if r["kind"] in ("seamcall", "tdcall")]
    assert calls and all(r["attempt"] == 1 for r in calls)
    assert all(r["outcome"] != "busy" for r in calls)
    assert any(r["outcome"] == "giveup" for r in calls)


@pytest.mark.parametrize("scenario", ["zero-step"])
def test_upstream_fault_path_never_reenters(scenario: str) -> None:
    """upstream: after a BUSY AUG/SEPT.ADD the vCPU's very next record is the same leaf with
    attempt+1, never a TDH.VP.ENTER; the fault path never gives up."""
    checked = 0
    for seed in SEEDS:
        by_actor: dict[str, list[dict[str, Any]]] = {}
        for rec in log_of(scenario, "upstream", seed):
            by_actor.setdefault(rec["actor"], []).append(rec)
        for recs in by_actor.values():
            for rec, nxt in zip(recs, recs[1:], strict=False):
                if rec["leaf"] in (AUG, SEPT_ADD) and rec["outcome"] != "success":
                    assert rec["outcome"] == "busy", rec
                    assert (nxt["kind"], nxt["leaf"], nxt["attempt"]) == (
                        "seamcall", rec["leaf"], rec["attempt"] + 1), (rec, nxt)
                    checked += 1
    assert checked, "no fault-path BUSY in these runs: the test checked nothing"


@pytest.mark.parametrize("seed", SEEDS)
def test_upstream_zap_path_kicks_then_retries_once(seed: int) -> None:
    """upstream: a BUSY BLOCK/TRACK/REMOVE of zap0 is followed by a kick of zap0, then the same
    leaf at attempt 2; there is never an attempt 3."""
    log = log_of("conversion", "upstream", seed)
    zap = [r for r in log if r["actor"] == "zap0"]
    checked = 0
    for i, rec in enumerate(zap):
        if rec["leaf"] in ZAP_LEAVES:
            assert rec["attempt"] in (1, 2), rec
        if rec["leaf"] in ZAP_LEAVES and rec["attempt"] == 1 and rec["outcome"] != "success":
            assert rec["outcome"] == "busy", rec
            if len(zap) < i + 3:  # the run ended before the kick and retry completed
                assert rec["t_ns"] + rec["dur_ns"] + T.kick_ns > END_NS, rec
                continue
            kick, retry = zap[i + 1], zap[i + 2]
            assert kick["kind"] == "kick" and kick["t_ns"] == rec["t_ns"] + rec["dur_ns"], kick
            assert (retry["leaf"], retry["attempt"]) == (rec["leaf"], 2), retry
            assert retry["t_ns"] >= kick["t_ns"] + kick["dur_ns"]
            checked += 1
        if rec["leaf"] in ZAP_LEAVES and rec["attempt"] == 2 and rec["outcome"] != "success":
            assert rec["outcome"] == "giveup"
            assert zap[i + 1]["kind"] == "kvm_bug"
    assert checked, "no zap-path BUSY in this run: the test checked nothing"


def test_upstream_zap_retry_blocks_entry_while_kicking() -> None:
    """upstream: between a zap BUSY and its retry, no vCPU starts a TDH.VP.ENTER."""
    log = log_of("conversion", "upstream", 1)
    zap = [r for r in log if r["actor"] == "zap0"]
    windows = []
    for i, rec in enumerate(zap):
        if rec["leaf"] in ZAP_LEAVES and rec["attempt"] == 1 and rec["outcome"] == "busy":
            retry = zap[i + 2]
            windows.append((rec["t_ns"] + rec["dur_ns"], retry["t_ns"] + retry["dur_ns"]))
    assert windows
    enters = [r["t_ns"] for r in log if r["leaf"] == "TDH.VP.ENTER"]
    for lo, hi in windows:
        assert not [t for t in enters if lo < t < hi], (lo, hi)


def test_retry_max_changes_the_bounded_give_ups() -> None:
    """A bigger retry budget leaves fewer SEPT BUSY give-ups in the same run (zero-step)."""
    def giveups(retry_max: int) -> int:
        return sum(1 for r in log_of("zero-step", "bounded", 1, retry_max)
                   if r["outcome"] == "giveup" and r["status"] == SEPT_BUSY)
    assert giveups(0) > giveups(1) > giveups(16)


def test_calls_by_actor_sees_each_actor() -> None:
    """The conversion scenario's log has every vCPU and the zap thread making calls."""
    actors = set(calls_by_actor(log_of("conversion", "bounded", 1)))
    assert {f"vcpu{i}" for i in range(8)} | {"zap0"} == actors
