"""BUSY injection: the out-of-tree debug config that failed every Nth SEPT SEAMCALL on purpose.

To shake out KVM's handling of TDX_OPERAND_BUSY without waiting for real contention, the
TDX developers ran a debug build whose SEAMCALL helpers returned a BUSY status on every
Nth call (N = 47 in the configuration discussed on the kvm list): the SEPT wrapper
(tdx_seamcall_sept in the v19-era arch/x86/kvm/vmx/tdx.c; the TDH.MEM.* helpers of
arch/x86/virt/vmx/tdx/tdx.c in mainline) returned TDX_OPERAND_BUSY | SEPT_TREE before its
retry loop, so the injected BUSY is never retried inside the wrapper, and
TDH.MEM.TRACK returned TDX_OPERAND_BUSY | TD_EPOCH. TDH.MEM.RANGE.BLOCK was never
injected (nor counted). No lock is taken by an injected call: the module is not entered.

`[workload] inject_busy_every = N` (0, the default, is off) turns it on; one counter per
TD counts the calls of the SEPT wrapper (each run of the fault and each zap-path call,
but not the wrapper's own retries) and TRACK's calls. Injected records carry the extra
key `injected` (true), and the summary counts them as `injected_busy`. The build's
TDH.MEM.PAGE.ADD (engine.build, before any vCPU runs) is not injected.

The hooks in engine.fault.EptViolationHandler._attempt and engine.zap.Zapper._attempt are
one line each and cost one attribute test with the knob off (`sim.injector` is None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.records import BUSY
from engine.status import (
    OPERAND_ID_SEPT_TREE,
    OPERAND_ID_TD_EPOCH,
    TDX_OPERAND_BUSY,
)

if TYPE_CHECKING:
    from engine.fault import EptViolationHandler
    from engine.sim import Simulation
    from engine.zap import Zapper

BLOCK: Final = "TDH.MEM.RANGE.BLOCK"
TRACK: Final = "TDH.MEM.TRACK"
SEPT_BUSY: Final = TDX_OPERAND_BUSY | OPERAND_ID_SEPT_TREE
EPOCH_BUSY: Final = TDX_OPERAND_BUSY | OPERAND_ID_TD_EPOCH
# The extra key an injected record carries (one shared dict: records never change it).
INJECTED: Final[dict[str, Any]] = {"injected": True}
STAT: Final = "injected_busy"


class Injector:
    """Counts the injectable calls of one TD and says which of them fail on purpose."""

    def __init__(self, sim: Simulation, every: int) -> None:
        self.sim = sim
        self.every = every
        self.calls = 0

    def _due(self) -> bool:
        self.calls += 1
        return self.calls % self.every == 0

    def fault_call(self, vcpu: EptViolationHandler) -> bool:
        """The fault path's TDH.MEM.SEPT.ADD / TDH.MEM.PAGE.AUG (tdx_sept_link_private_spt,
        tdx_sept_set_private_spte): True when this call returned an injected BUSY, which
        `vcpu` has then handled as the policy handles a BUSY out of the wrapper."""
        sim = self.sim
        if vcpu.attempt > 1 and not sim.policy.local_retry:
            return False  # the wrapper's own retry of a real BUSY: not a new call
        if not self._due():
            return False
        if vcpu.held is not None:
            vcpu._resolve(BUSY)  # upstream's held BUSY: the re-run issued the leaf again
        sim.stats[STAT] += 1
        # retry_max 0: the wrapper's loop never sees an injected BUSY.
        vcpu.busy_returned(sim.now, SEPT_BUSY, "SEPT_TREE", 0, INJECTED)
        return True

    def zap_call(self, zapper: Zapper) -> bool:
        """The zap path's TDH.MEM.PAGE.REMOVE (tdx_sept_remove_private_spte) and TDH.MEM.TRACK
        (tdx_track): True when this call returned an injected BUSY, handled by `zapper`
        as its policy handles a BUSY out of the wrapper. RANGE.BLOCK is never injected."""
        leaf = zapper.leaf
        if leaf == BLOCK:
            return False
        sim = self.sim
        if leaf != TRACK and zapper.attempt > 1 and not sim.policy.local_retry:
            return False  # the wrapper's own retry
        if not self._due():
            return False
        sim.stats[STAT] += 1
        if leaf == TRACK:
            zapper.busy_returned(sim.now, EPOCH_BUSY, "TD_EPOCH", sim.retry_max, INJECTED)
        else:
            zapper.busy_returned(sim.now, SEPT_BUSY, "SEPT_TREE", 0, INJECTED)
        return True


def make_injector(sim: Simulation) -> Injector | None:
    """The TD's injector, or None with `inject_busy_every` 0 (off: the hooks cost a test)."""
    every: int = sim.workload.inject_busy_every
    return Injector(sim, every) if every else None
