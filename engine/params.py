"""Every latency, rate and size the engine uses, with its default and the reason for it.

No public figures exist for these (MODEL.md section 6): each default is an order of
magnitude taken from MODEL.md and is overridable by name in a scenario file
(`[timing]` for latencies, `[workload]` for the stochastic guest and host actors).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from engine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Timing:
    """Latencies in nanoseconds of simulated time."""

    # A SEAMCALL round trip (SEAMCALL, module entry, SEAMRET): about 1 us. A BUSY return
    # costs just this: the module fails at its first try-lock and returns at once.
    seamcall_ns: int = 1_000
    # Module work on top of the round trip, per leaf (MODEL.md 6: "a few us" for page
    # work, "about 1 us" for BLOCK and TRACK).
    page_add_ns: int = 4_000
    sept_add_ns: int = 2_500
    page_aug_ns: int = 2_500
    range_block_ns: int = 1_000
    range_unblock_ns: int = 1_000
    page_remove_ns: int = 2_500
    sept_remove_ns: int = 2_500
    track_ns: int = 1_000
    # vCPU setup at build time (KVM_TDX_INIT_VCPU) and the measurement of the image
    # (assumptions: no published figures; VP.INIT programs the TD VMCS, MR.EXTEND hashes
    # 256 bytes with SHA-384, MR.FINALIZE closes the measurement).
    vp_create_ns: int = 2_000
    vp_addcx_ns: int = 1_000
    vp_init_ns: int = 5_000
    mr_extend_ns: int = 500
    mr_finalize_ns: int = 5_000
    # 2 MB mappings (engine/huge.py). AUG at 2M writes one SEPT entry, like a 4K AUG;
    # DEMOTE writes the 512 entries of a new SEPT page (MOVDIR64B) and splits the PAMT
    # entry: a few us.
    page_aug_2m_ns: int = 2_500
    page_demote_ns: int = 3_000
    # Guest TDCALL TDG.MEM.PAGE.ACCEPT of a 4K page (zeroes it): about 1.5 us in all.
    accept_ns: int = 1_500
    # A #VE delivered to the guest and its handler's return, when the handler issues no
    # TDCALL (the UPM selftest's disallow_accept / allow_mmio handlers): exception entry
    # and IRET, about 1 us.
    ve_ns: int = 1_000
    # TDG.MEM.PAGE.ACCEPT of a 2 MB page zeroes 2 MiB: at some 20 GB/s, about 100 us,
    # done as 512 chunks of 4K (200 ns each), with a check for interrupts after each.
    accept_2m_ns: int = 102_400
    # TDH.VP.ENTER up to VM entry, and the TD exit back to the host: a couple of us each.
    vp_entry_ns: int = 2_000
    td_exit_ns: int = 2_000
    # KVM's EPT-violation handling around the SEAMCALLs (fault lookup, TDP MMU walk).
    kvm_fault_ns: int = 2_000
    # The wrapper's immediate re-issue of a BUSY SEAMCALL: a loop iteration.
    retry_gap_ns: int = 100
    # A guest's own retry of a BUSY TDCALL (its #VE handler loops).
    guest_retry_gap_ns: int = 200
    # KVM's run loop going round after a BUSY TDH.VP.ENTER or a give-up.
    reenter_gap_ns: int = 300
    # The IPI round trip of a kick: the least a kick takes. It lasts longer when a vCPU
    # still has to finish entering or a TDCALL before it can leave guest mode (the kick
    # waits for every vCPU's TD exit to be back in the host).
    kick_ns: int = 4_000
    # Host-side handling of an IO exit (emulation in KVM) and userspace's answer to a
    # memory-fault exit (a KVM_RUN round trip).
    io_ns: int = 3_000
    memory_fault_ns: int = 10_000
    # Exponential back-off policy: first delay and cap.
    backoff_base_ns: int = 500
    backoff_max_ns: int = 64_000
    # Module 1.5's HP_LOCK_TIMEOUT (published default 1 s, range 10 ms to 100 s).
    hp_lock_timeout_ns: int = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Workload:
    """The stochastic guest and the host actors: rates, mixes and sizes."""

    # Guest time between instructions of interest: exponential with this mean. Tens of
    # us during boot, when most exits are EPT violations on fresh private pages.
    run_mean_ns: int = 30_000
    # What the next instruction of interest is, by weight: a memory access, an IO exit,
    # a HLT.
    access_weight: float = 0.85
    io_weight: float = 0.10
    hlt_weight: float = 0.05
    # A HLT keeps the vCPU out of the guest until an interrupt: exponential mean.
    hlt_mean_ns: int = 50_000
    # A memory access touches a fresh page (never used: faults) or revisits one of the
    # vCPU's earlier pages (faults only if it was zapped since).
    fresh_fraction: float = 0.9
    # A fresh access lands in the pool every vCPU shares (two vCPUs may fault one GPA).
    shared_pool_fraction: float = 0.02
    # The guest ACCEPTs a fresh page before touching it (Linux's lazy accept), so its
    # fault is an ACCEPT exit, which the zero-step filter does not count.
    accept_first_fraction: float = 0.5
    # An instruction whose operands span several fresh GFNs (a string instruction):
    # each GFN faults at the same RIP (MODEL.md 4: more than 6 trips the filter).
    multi_gfn_fraction: float = 0.0
    multi_gfn_count: int = 8
    # Guest private memory and the part of it each vCPU faults in sequentially.
    td_memory_mib: int = 4_096
    # Host zap thread (memory conversion, ballooning): a batch every `zap_interval_ns`
    # of `zap_pages` pages (BLOCK each, TRACK, kick, REMOVE each); 0 pages = no thread.
    zap_pages: int = 0
    zap_interval_ns: int = 100_000
    # Build time: PAGE.ADD of this many initial-image pages before the vCPUs start.
    build_pages: int = 0
    # BUSY injection (engine.inject): every Nth call of the SEPT wrapper returns
    # BUSY|SEPT_TREE, every Nth TRACK BUSY|TD_EPOCH; the debug config used 47. 0: off.
    inject_busy_every: int = 0


def override(obj: Any, values: dict[str, Any], section: str) -> Any:
    """A copy of a Timing or Workload with `values` applied; unknown names refused."""
    known = {f.name: f for f in fields(obj)}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"{section}.{name}", f"unknown name; known: {', '.join(known)}")
        default = getattr(obj, name)
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{section}.{name}", "must be an integer >= 0")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0.0 <= value <= (1.0 if name.endswith(("_fraction", "_weight")) else 1e18)
        ):
            raise ConfigError(f"{section}.{name}", "must be a number between 0 and 1")
    return replace(obj, **values)
