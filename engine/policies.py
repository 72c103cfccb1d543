"""KVM's reactions to a BUSY status: one small class per policy (MODEL.md section 5)."""

from __future__ import annotations

import random
from typing import ClassVar, Final

from engine.module import SEPT_WRAPPED
from engine.params import Timing
from engine.status import STATUS_CLASS_MASK, TDX_ERROR_SEPT_BUSY, TDX_OPERAND_BUSY

TRACK: Final = "TDH.MEM.TRACK"

GIVE_UP: Final = -1  # hand the BUSY back: the fault path re-enters the guest, the zap path moves on
KICK_RETRY: Final = -2  # upstream zap path: block entry, kick every vCPU, retry once
KVM_BUG: Final = -3  # the zap path's last try failed too (KVM_BUG_ON)
RERUN: Final = -4  # upstream fault path: hand the BUSY back, and run the fault again


class Policy:
    """What KVM does with a BUSY SEAMCALL. Returns a delay in ns before retrying the same
    logical call, or GIVE_UP / KICK_RETRY / KVM_BUG."""

    name: ClassVar[str] = ""
    # Serialise the SEPT SEAMCALLs behind a host mutex (the `vmm_lock` alternative).
    serialise_sept: ClassVar[bool] = False
    # RET_PF_RETRY runs the fault again in a local loop (tdx_handle_ept_violation) rather
    # than by entering the guest.
    local_retry: ClassVar[bool] = False
    # The local loop leaves a fault on an INVALID memslot and re-enters the guest, and a
    # KVM_PRE_FAULT_MEMORY there returns -EAGAIN (6.18: 2bc2694fe20b, 3ccbf6f47098).
    breaks_on_invalid_memslot: ClassVar[bool] = True
    # A retry of KVM's own uncapped loops (re-entering after a BUSY TDH.VP.ENTER, v19's
    # TRACK loop) continues the logical call. `bounded` starts a new call per attempt
    # instead, so that its one cap on a logical call, retry_max + 1 attempts, stays the
    # SEPT wrapper's (SEAMCALL_RETRY_MAX) and these loops never count as give-ups.
    own_loops_continue_call: ClassVar[bool] = True
    # KVM_TDX_INIT_VCPU and KVM_TDX_INIT_MEM_REGION take "all the locks" (6.19's
    # tdx_acquire_vm_state_locks: kvm->lock, every vcpu->mutex, slots_lock), so their
    # SEAMCALLs never meet on TDR; before 6.19 they ran concurrently.
    serialises_build: ClassVar[bool] = False

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
    own_loops_continue_call: ClassVar[bool] = False

    def _delay(self, attempt: int, timing: Timing, rng: random.Random) -> int:
        return timing.retry_gap_ns

    def fault_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                   timing: Timing, rng: random.Random) -> int:
        if status == TDX_ERROR_SEPT_BUSY and leaf in SEPT_WRAPPED and attempt <= retry_max:
            return self._delay(attempt, timing, rng)
        return GIVE_UP

    def zap_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                 timing: Timing, rng: random.Random) -> int:
        if leaf == TRACK:
            # v19's tdx_track(): TRACK again at once while it returns OPERAND_BUSY, no cap
            # ("spin as long as vCPUs keep entering"); any other failure is KVM_BUG_ON.
            if status & STATUS_CLASS_MASK == TDX_OPERAND_BUSY:
                return timing.retry_gap_ns
            return KVM_BUG
        return self.fault_busy(leaf, status, attempt, retry_max, timing, rng)

    def enter_busy(self, status: int, attempt: int, retry_max: int) -> bool:
        # v19 re-entered at once on a BUSY TDH.VP.ENTER (EXIT_FASTPATH_REENTER_GUEST),
        # with no cap: only the SEPT wrapper's loop has SEAMCALL_RETRY_MAX.
        return status & STATUS_CLASS_MASK == TDX_OPERAND_BUSY


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
    """`upstream` (mainline since Jan 2025): a BUSY fault-path SEAMCALL goes back to the
    TDP MMU (-EBUSY, RET_PF_RETRY) and tdx_handle_ept_violation runs the whole fault
    again locally, without re-entering the guest, with no cap; the zap path tries once, then blocks entry, kicks
    every vCPU and retries once; a second failure is a KVM bug."""

    name: ClassVar[str] = "upstream"
    local_retry: ClassVar[bool] = True
    serialises_build: ClassVar[bool] = True

    def fault_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                   timing: Timing, rng: random.Random) -> int:
        return RERUN

    def zap_busy(self, leaf: str, status: int, attempt: int, retry_max: int,
                 timing: Timing, rng: random.Random) -> int:
        return KICK_RETRY if attempt == 1 else KVM_BUG

    def enter_busy(self, status: int, attempt: int, retry_max: int) -> bool:
        # tdx_vcpu_run: OPERAND_BUSY -> EXIT_FASTPATH_EXIT_HANDLED, the run loop re-enters.
        return status & STATUS_CLASS_MASK == TDX_OPERAND_BUSY


class Upstream617(Upstream):
    """`upstream_6_17`: mainline's local retry as it was before 6.18 and 6.19. The loop of
    tdx_handle_ept_violation does not leave a fault on an INVALID memslot (6.18 added the
    break-out, and kvm_mmu_faultin_pfn's -EAGAIN for KVM_PRE_FAULT_MEMORY), so a memslot
    deletion waiting in synchronize_srcu and the retrying vCPU wait on each other; and
    KVM_TDX_INIT_VCPU runs concurrently with KVM_TDX_INIT_MEM_REGION (6.19 serialised
    them), so their SEAMCALLs can meet on TDR."""

    name: ClassVar[str] = "upstream_6_17"
    breaks_on_invalid_memslot: ClassVar[bool] = False
    serialises_build: ClassVar[bool] = False


POLICY_CLASSES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (NoRetry, Bounded, VmmLock, Upstream, Backoff, Upstream617)
}


def make_policy(name: str) -> Policy:
    return POLICY_CLASSES[name]()
