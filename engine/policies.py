"""KVM's reactions to a BUSY status: one small class per policy (MODEL.md section 5)."""

from __future__ import annotations

import random
from typing import ClassVar, Final

from engine.module import SEPT_WRAPPED
from engine.params import Timing
from engine.status import TDX_ERROR_SEPT_BUSY

GIVE_UP: Final = -1  # hand the BUSY back: the fault path re-enters the guest, the zap path moves on
KICK_RETRY: Final = -2  # upstream zap path: block entry, kick every vCPU, retry once
KVM_BUG: Final = -3  # upstream zap path: the retry after the kick failed too


class Policy:
    """What KVM does with a BUSY SEAMCALL. Returns a delay in ns before retrying the same
    logical call, or GIVE_UP / KICK_RETRY / KVM_BUG."""

    name: ClassVar[str] = ""
    # Serialise the SEPT SEAMCALLs behind a host mutex (the `vmm_lock` alternative).
    serialise_sept: ClassVar[bool] = False

    def fault_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                   timing: Timing, rng: random.Random) -> int:
        return GIVE_UP

    def zap_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                 timing: Timing, rng: random.Random) -> int:
        return self.fault_busy(leaf, status, attempt, retry_max, timing, rng)

    def enter_busy(self, status: int, attempt: int, retry_max: int) -> bool:
        """True: re-issue TDH.VP.ENTER as the same logical call; False: a new one."""
        return False


class NoRetry(Policy):
    """`none`: every BUSY goes back; the TDP MMU resumes the guest and the fault repeats."""

    name: ClassVar[str] = "none"


class Bounded(Policy):
    """`bounded`: re-issue at once while the status is exactly BUSY|SEPT_TREE, at most
    retry_max times, for the wrapped leaves only; then let the TDP MMU retry."""

    name: ClassVar[str] = "bounded"

    def _delay(self, attempt: int, timing: Timing, rng: random.Random) -> int:
        return timing.retry_gap_ns

    def fault_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                   timing: Timing, rng: random.Random) -> int:
        if status == TDX_ERROR_SEPT_BUSY and leaf in SEPT_WRAPPED and attempt <= retry_max:
            return self._delay(attempt, timing, rng)
        return GIVE_UP

    def enter_busy(self, status: int, attempt: int, retry_max: int) -> bool:
        return status == TDX_ERROR_SEPT_BUSY and attempt <= retry_max


class VmmLock(Bounded):
    """`vmm_lock`: `bounded`, with every SEPT SEAMCALL serialised behind a host mutex."""

    name: ClassVar[str] = "vmm_lock"
    serialise_sept: ClassVar[bool] = True


class Backoff(Bounded):
    """`backoff`: `bounded` with exponential back-off and jitter between retries."""

    name: ClassVar[str] = "backoff"

    def _delay(self, attempt: int, timing: Timing, rng: random.Random) -> int:
        base = min(timing.backoff_base_ns << min(attempt - 1, 30), timing.backoff_max_ns)
        return int(base * (0.5 + rng.random()))


class Upstream(Policy):
    """`upstream` (mainline since Jan 2025): the fault path retries locally without
    re-entering the guest, with no cap; the zap path tries once, then blocks entry, kicks
    every vCPU and retries once; a second failure is a KVM bug."""

    name: ClassVar[str] = "upstream"

    def fault_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                   timing: Timing, rng: random.Random) -> int:
        return timing.kvm_fault_ns

    def zap_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                 timing: Timing, rng: random.Random) -> int:
        return KICK_RETRY if attempt == 1 else KVM_BUG

    def enter_busy(self, status: int, attempt: int, retry_max: int) -> bool:
        return True


POLICY_CLASSES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (NoRetry, Bounded, VmmLock, Upstream, Backoff)
}


def make_policy(name: str) -> Policy:
    return POLICY_CLASSES[name]()
