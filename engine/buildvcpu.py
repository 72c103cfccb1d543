"""The TD build with vCPU setup: KVM_TDX_INIT_MEM_REGION beside KVM_TDX_INIT_VCPU, then finalize."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from engine.hostlocks import Mutex
from engine.pagebytes import ACCEPTED
from engine.records import GIVEUP, IOCTL, KVM_BUG, SEAMCALL, SUCCESS, VM_DEAD

if TYPE_CHECKING:
    from engine.script import Checker
    from engine.sim import Simulation

PAGE_ADD: Final = "TDH.MEM.PAGE.ADD"
MR_EXTEND: Final = "TDH.MR.EXTEND"
MR_FINALIZE: Final = "TDH.MR.FINALIZE"
VP_CREATE: Final = "TDH.VP.CREATE"
VP_ADDCX: Final = "TDH.VP.ADDCX"
VP_INIT: Final = "TDH.VP.INIT"
EXTEND_CHUNKS: Final = 16  # TDH.MR.EXTEND measures 256 bytes (TDX_EXTENDMR_CHUNKSIZE)
DEFAULT_TDCX_PAGES: Final = 4  # an assumption: the module reports it (tdvps_base_size)
MAX_TDCX_PAGES: Final = 64


@dataclass(frozen=True)
class InitVcpuSpec:
    """The `[[init_vcpu]]` table: KVM_TDX_INIT_VCPU for every vCPU from `start_ns`."""

    start_ns: int = 0
    tdcx_pages: int = DEFAULT_TDCX_PAGES
    measure: bool = True  # KVM_TDX_MEASURE_MEMORY_REGION: MR.EXTEND after each PAGE.ADD


def parse_init_vcpu(t: dict[str, Any], path: str, check: Checker, span: Any) -> InitVcpuSpec | None:
    """`[[init_vcpu]]`: `start_us`, `tdcx_pages`, `measure`; one table at most."""
    if not path.endswith("[0]"):
        check.err(path, "one [[init_vcpu]] table at most (it sets up every vCPU)")
        return None
    start = check.integer(t, "start_us", path, 0, 10_000_000_000, 0)
    tdcx = check.integer(t, "tdcx_pages", path, 0, MAX_TDCX_PAGES, DEFAULT_TDCX_PAGES)
    return InitVcpuSpec(start * 1000, tdcx, check.boolean(t, "measure", path, True))


class Build:
    """Builds the TD as Yan Zhao's selftests did: one userspace thread runs
    KVM_TDX_INIT_MEM_REGION over the image (tdx_vcpu_init_mem_region ->
    tdx_gmem_post_populate: TDH.MEM.PAGE.ADD, then TDH.MR.EXTEND per 256 bytes), another
    KVM_TDX_INIT_VCPU for each vCPU in turn (tdx_vcpu_init -> tdx_td_vcpu_init:
    TDH.VP.CREATE, TDH.VP.ADDCX per TDCX page, TDH.VP.INIT); once both are done,
    KVM_TDX_FINALIZE_VM (tdx_td_finalize: TDH.MR.FINALIZE) and the vCPUs run.

    Before 6.19 the two ioctls held only their own vCPU's mutex and ran at once: PAGE.ADD
    and MR.EXTEND take TDR exclusive, the vCPU leaves shared, so they collide on TDR. A
    BUSY vCPU-setup SEAMCALL is a KVM_BUG_ON (the VM is dead, no vCPU ever enters); a
    BUSY PAGE.ADD returns -EBUSY to userspace, which calls again; a BUSY MR.EXTEND
    returns -EIO and the launch fails. From 6.19 (policies with `serialises_build`) each
    ioctl takes "all the locks" (tdx_acquire_vm_state_locks: kvm->lock, every vCPU's
    mutex, slots_lock; commit 15945e9ec195, whose message names "tdh_vp_create()
    contends with either tdh_mr_extend() or tdh_mr_finalize()"), so they run one after
    another and never meet on TDR. Here FINALIZE always follows both threads (a
    userspace that ran it beside INIT_VCPU would meet VP.CREATE the same way). Every
    ioctl's return is an `ioctl` record.
    """

    def __init__(self, sim: Simulation, pages: int, spec: InitVcpuSpec,
                 on_done: Callable[[], None]) -> None:
        self.sim = sim
        self.pages = pages
        self.spec = spec
        self.on_done = on_done
        self.name = "build0"
        self.state_locks = Mutex()  # 6.19's "all the locks", taken per ioctl
        self.holds: str = ""  # which thread holds them: "mem", "vcpu" or ""
        self.waiting: deque[tuple[str, Callable[[Any], None]]] = deque()  # for them, FIFO
        self.last_status = 0  # the status of the last BUSY SEAMCALL
        self.next_page = 0
        self.chunk = 0  # MR.EXTEND chunks done on the current page
        self.next_vcpu = 0
        self.tdcx_done = 0
        self.mem_done = pages == 0
        self.vcpus_done = False
        self.failed = False
        self.end_estimate_ns = self._estimate()
        sim.at(0, self._mem_ioctl)
        sim.at(spec.start_ns, self._vcpu_ioctl)

    def _estimate(self) -> int:
        """When the vCPUs would start if nothing collided (the workload's zap starts then)."""
        t = self.sim.timing
        per_page = t.seamcall_ns + t.page_add_ns
        if self.spec.measure:
            per_page += EXTEND_CHUNKS * (t.seamcall_ns + t.mr_extend_ns)
        per_page += t.kvm_fault_ns
        per_vcpu = (3 + self.spec.tdcx_pages) * t.seamcall_ns + t.vp_create_ns + t.vp_init_ns \
            + self.spec.tdcx_pages * t.vp_addcx_ns
        return max(self.pages * per_page, self.spec.start_ns + self.sim.config.vcpus * per_vcpu) \
            + t.seamcall_ns + t.mr_finalize_ns

    # -- the ioctls' locks -------------------------------------------------------------
    def _locked(self, who: str, then: Callable[[Any], None]) -> None:
        """Run `then` once the ioctl may go on: at once before 6.19, else with the VM
        state locks held (granted as an event, never as a nested call)."""
        if not self.sim.policy.serialises_build:
            then(None)
            return
        self.waiting.append((who, then))
        self.state_locks.acquire(self._granted)

    def _granted(self) -> None:
        who, then = self.waiting.popleft()
        self.holds = who
        self.sim.at(self.sim.now, then)

    def _unlock(self, who: str) -> None:
        if self.holds == who:
            self.holds = ""
            self.state_locks.release()

    def _ioctl_record(self, actor: str, ioctl: str, result: str, **extra: Any) -> None:
        sim = self.sim
        sim.stats["ioctls"] += 1
        if result != "0":
            sim.stats["ioctl_errors"] += 1
        sim.emit((sim.now, 0, IOCTL, actor, None, None, None, None, None,
                  {"ioctl": ioctl, "result": result, **extra}))

    def _seamcall(self, actor: str, leaf: str, work_ns: int, owner: int, page: int) -> int:
        """Try `leaf`'s lock set now: its record, and its duration, or -1 on BUSY."""
        sim = self.sim
        steps = sim.host_locks[leaf]
        fail = sim.locks.try_acquire(steps, owner, page, True)
        if fail is None:
            dur = sim.timing.seamcall_ns + work_ns
            sim.emit((sim.now, dur, SEAMCALL, actor, leaf, 0, None, 1, SUCCESS, None))
            sim.at(sim.now + dur, self._release, (steps, owner, page))
            return dur
        sim.emit((sim.now, sim.timing.seamcall_ns, SEAMCALL, actor, leaf, fail.status,
                  fail.operand, 1, GIVEUP, None))
        self.last_status = fail.status
        return -1

    def _release(self, held: tuple[Any, int, int]) -> None:
        self.sim.locks.release(held[0], held[1], held[2])

    # -- KVM_TDX_INIT_MEM_REGION -------------------------------------------------------
    def _mem_ioctl(self, _: Any) -> None:
        if not self.mem_done:
            self._locked("mem", self._mem_step)

    def _mem_step(self, _: Any) -> None:
        """The next SEAMCALL of tdx_gmem_post_populate: PAGE.ADD, or the page's next
        MR.EXTEND chunk."""
        sim = self.sim
        if sim.vm_dead:  # KVM_REQ_VM_DEAD: the ioctl fails with -EIO
            self._ioctl_record(self.name, "KVM_TDX_INIT_MEM_REGION", "EIO",
                               gpa=hex(self.next_page << 12), pages=self.pages - self.next_page)
            return self._unlock("mem")
        if self.failed:
            return self._unlock("mem")
        if self.next_page >= self.pages:
            self.mem_done = True
            self._ioctl_record(self.name, "KVM_TDX_INIT_MEM_REGION", "0", pages=self.pages)
            self._unlock("mem")
            return self._maybe_finalize()
        t = sim.timing
        page = self.next_page
        if self.chunk == 0:
            dur = self._seamcall(self.name, PAGE_ADD, t.page_add_ns, -1, page)
            if dur < 0:  # -EBUSY: userspace calls again for the rest of the region
                self._ioctl_record(self.name, "KVM_TDX_INIT_MEM_REGION", "EBUSY",
                                   gpa=hex(page << 12), pages=self.pages - page)
                self._unlock("mem")
                sim.at(sim.now + t.seamcall_ns + t.reenter_gap_ns, self._mem_ioctl)
                return
            sim.pages[page] = ACCEPTED
            sim.regions[page >> 9] = 1
        else:
            dur = self._seamcall(self.name, MR_EXTEND, t.mr_extend_ns, -1, page)
            if dur < 0:  # -EIO: the image is not measured; userspace aborts the launch
                self._ioctl_record(self.name, "KVM_TDX_INIT_MEM_REGION", "EIO",
                                   gpa=hex(page << 12), pages=self.pages - page)
                self.failed = True
                return self._unlock("mem")
        self.chunk += 1
        if self.chunk > (EXTEND_CHUNKS if self.spec.measure else 0):
            # The next page first goes through kvm_gmem_populate and the TDP MMU walk
            # (kvm_tdp_map_page): TDR is free meanwhile.
            self.chunk = 0
            self.next_page += 1
            dur += t.kvm_fault_ns
        sim.at(sim.now + dur, self._mem_step)

    # -- KVM_TDX_INIT_VCPU -------------------------------------------------------------
    def _vcpu_ioctl(self, _: Any) -> None:
        if self.next_vcpu >= len(self.sim.vcpus):
            self.vcpus_done = True
            return self._maybe_finalize()
        self.tdcx_done = -1  # VP.CREATE first
        self._locked("vcpu", self._vcpu_step)

    def _vcpu_step(self, _: Any) -> None:
        """The next SEAMCALL of tdx_td_vcpu_init for vCPU `next_vcpu`."""
        sim = self.sim
        if self.failed or sim.vm_dead:
            return self._unlock("vcpu")
        t = sim.timing
        i = self.next_vcpu
        actor = sim.vcpus[i].name
        if self.tdcx_done < 0:
            leaf, work = VP_CREATE, t.vp_create_ns
        elif self.tdcx_done < self.spec.tdcx_pages:
            leaf, work = VP_ADDCX, t.vp_addcx_ns
        else:
            leaf, work = VP_INIT, t.vp_init_ns
        dur = self._seamcall(actor, leaf, work, i, 0)
        if dur < 0:
            return self._kvm_bug(actor, leaf)
        if leaf == VP_INIT:
            sim.at(sim.now + dur, self._vcpu_done)
            return
        self.tdcx_done += 1
        sim.at(sim.now + dur, self._vcpu_step)

    def _vcpu_done(self, _: Any) -> None:
        self._ioctl_record(self.sim.vcpus[self.next_vcpu].name, "KVM_TDX_INIT_VCPU", "0")
        self.next_vcpu += 1
        self._unlock("vcpu")
        self._vcpu_ioctl(None)

    def _kvm_bug(self, actor: str, leaf: str) -> None:
        """KVM_BUG_ON(err) in tdx_td_vcpu_init: kvm_vm_bugged, the VM is dead."""
        sim = self.sim
        sim.stats["kvm_bugs"] += 1
        sim.emit((sim.now, 0, KVM_BUG, actor, leaf, None, None, None, None,
                  {"failed_status": "0x%016X" % self.last_status}))
        self._ioctl_record(actor, "KVM_TDX_INIT_VCPU", "EIO")
        sim.emit((sim.now, 0, VM_DEAD, actor, None, None, None, None, None,
                  {"reason": f"KVM_BUG_ON: {leaf} failed"}))
        self.failed = True
        self._unlock("vcpu")
        sim.kill_vm()

    # -- KVM_TDX_FINALIZE_VM -----------------------------------------------------------
    def _maybe_finalize(self) -> None:
        if self.mem_done and self.vcpus_done and not self.failed:
            self._locked("finalize", self._finalize)

    def _finalize(self, _: Any) -> None:
        sim = self.sim
        dur = self._seamcall(self.name, MR_FINALIZE, sim.timing.mr_finalize_ns, -1, 0)
        if dur < 0:  # nothing else runs now: only a model bug gets here
            self.failed = True
            return self._unlock("finalize")
        sim.at(sim.now + dur, self._finalized)

    def _finalized(self, _: Any) -> None:
        self._ioctl_record(self.name, "KVM_TDX_FINALIZE_VM", "0")
        self._unlock("finalize")
        self.on_done()
