"""What a guest vCPU does: a source of operations, stochastic or scripted."""

from __future__ import annotations

import random
from typing import Final, NamedTuple, Protocol

from engine.params import Workload

# Operation kinds.
ACCESS: Final = 0
ACCEPT: Final = 1
IO: Final = 2
HLT: Final = 3
STOP: Final = 4
PAGES_PER_MIB: Final = 256
REGION_PAGES: Final = 512  # one 2 MiB secure-EPT page table maps 512 pages


class Op(NamedTuple):
    """One guest instruction of interest, after `run_ns` of guest time.

    `gpas` are page numbers (GPA >> 12). `ve`: the guest takes a #VE on a PENDING page and
    ACCEPTs it (True), or the access exits to the host and is counted (False). `arg` is the
    time a HLT waits for its interrupt.
    """

    run_ns: int
    kind: int
    rip: int
    gpas: tuple[int, ...]
    ve: bool = True
    arg: int = 0


class Guest(Protocol):
    def next_op(self) -> Op: ...


class Layout:
    """The TD's private memory: a shared pool and one slice per vCPU, in pages."""

    __slots__ = ("pages", "pool_start", "pool_pages", "slice_pages")

    def __init__(self, workload: Workload, vcpus: int) -> None:
        self.pages = max(workload.td_memory_mib * PAGES_PER_MIB, 2 * REGION_PAGES * (vcpus + 1))
        self.pool_pages = max(REGION_PAGES, self.pages // 64)
        self.pool_start = self.pages - self.pool_pages
        self.slice_pages = self.pool_start // vcpus

    def slice_start(self, vcpu: int) -> int:
        return vcpu * self.slice_pages


class StochasticGuest:
    """A guest that runs for exponential times between memory accesses, IO and HLT exits."""

    __slots__ = ("w", "rng", "layout", "start", "next_fresh", "rip", "weights", "mean_rate")

    def __init__(self, workload: Workload, layout: Layout, vcpu: int, rng: random.Random) -> None:
        self.w = workload
        self.rng = rng
        self.layout = layout
        self.start = layout.slice_start(vcpu)
        self.next_fresh = self.start
        self.rip = 0xFFFF_FFFF_8100_0000 + vcpu * 0x10_0000
        total = workload.access_weight + workload.io_weight + workload.hlt_weight or 1.0
        self.weights = (workload.access_weight / total,
                        (workload.access_weight + workload.io_weight) / total)
        self.mean_rate = 1.0 / max(workload.run_mean_ns, 1)

    def _fresh(self, count: int) -> tuple[int, ...]:
        end = self.start + self.layout.slice_pages
        out = []
        for _ in range(count):
            out.append(self.next_fresh)
            self.next_fresh += 1
            if self.next_fresh >= end:
                self.next_fresh = self.start
        return tuple(out)

    def next_op(self) -> Op:
        rng = self.rng
        w = self.w
        run_ns = int(rng.expovariate(self.mean_rate))
        self.rip += 16
        pick = rng.random()
        if pick >= self.weights[0]:
            if pick < self.weights[1]:
                return Op(run_ns, IO, self.rip, ())
            return Op(run_ns, HLT, self.rip, (), True, int(rng.expovariate(1.0 / max(w.hlt_mean_ns, 1))))
        if rng.random() < w.fresh_fraction:
            if w.multi_gfn_fraction and rng.random() < w.multi_gfn_fraction:
                return Op(run_ns, ACCESS, self.rip, self._fresh(w.multi_gfn_count))
            if w.shared_pool_fraction and rng.random() < w.shared_pool_fraction:
                gpas: tuple[int, ...] = (self.layout.pool_start + rng.randrange(self.layout.pool_pages),)
            else:
                gpas = self._fresh(1)
            if rng.random() < w.accept_first_fraction:
                return Op(run_ns, ACCEPT, self.rip, gpas)
            return Op(run_ns, ACCESS, self.rip, gpas)
        used = (self.next_fresh - self.start) or 1
        return Op(run_ns, ACCESS, self.rip, (self.start + rng.randrange(used),))
