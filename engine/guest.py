"""What a guest vCPU does: a source of operations, stochastic or scripted."""

from __future__ import annotations

import random
from math import log
from typing import Final, NamedTuple, Protocol

from engine.params import Workload

# Operation kinds.
ACCESS: Final = 0
ACCEPT: Final = 1
IO: Final = 2
HLT: Final = 3
STOP: Final = 4
ATTR_RD: Final = 5  # TDG.MEM.PAGE.ATTR.RD; `arg` is the time the TDCALL holds the entry
ATTR_WR: Final = 6  # TDG.MEM.PAGE.ATTR.WR; kinds from ATTR_RD on are attribute TDCALLs
# The guest's #VE handler for a PENDING page ([[vcpu]] ve_handler), by index: ACCEPT it,
# re-execute without accepting (spin at one RIP), or skip the access as MMIO.
VE_HANDLERS: Final = ("accept", "disallow_accept", "allow_mmio")
VE_DISALLOW_ACCEPT: Final = 1
VE_ALLOW_MMIO: Final = 2
PAGES_PER_MIB: Final = 256
REGION_PAGES: Final = 512  # one 2 MiB secure-EPT page table maps 512 pages


class Op(NamedTuple):
    """One guest instruction of interest, after `run_ns` of guest time.

    `gpas` are page numbers (GPA >> 12). `ve`: the guest takes a #VE on a PENDING page and
    ACCEPTs it (True), or the access exits to the host and is counted (False). `arg` is the
    time a HLT waits for its interrupt, or an attribute TDCALL holds the entry lock.
    """

    run_ns: int
    kind: int
    rip: int
    gpas: tuple[int, ...]
    ve: bool = True
    arg: int = 0


# Op(...) without the NamedTuple's Python-level __new__: the stochastic guest makes one
# per guest instruction of interest. Final, so compiled code reads them from C statics.
_new_op: Final = tuple.__new__
_OP: Final = Op


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

    __slots__ = ("rng", "random", "layout", "start", "end", "next_fresh", "rip", "access_cut",
                 "io_cut", "run_rate", "hlt_rate", "fresh_fraction", "multi_gfn_fraction",
                 "multi_gfn_count", "shared_pool_fraction", "accept_first_fraction")

    def __init__(self, workload: Workload, layout: Layout, vcpu: int, rng: random.Random) -> None:
        w = workload
        self.rng = rng
        self.random = rng.random  # the same generator; bound once, not per operation
        self.layout = layout
        self.start = layout.slice_start(vcpu)
        self.end = self.start + layout.slice_pages
        self.next_fresh = self.start
        self.rip = 0xFFFF_FFFF_8100_0000 + vcpu * 0x10_0000
        total = w.access_weight + w.io_weight + w.hlt_weight or 1.0
        self.access_cut = w.access_weight / total
        self.io_cut = (w.access_weight + w.io_weight) / total
        self.run_rate = 1.0 / max(w.run_mean_ns, 1)
        self.hlt_rate = 1.0 / max(w.hlt_mean_ns, 1)
        # The workload's fractions, read once per operation: copied out of the dataclass.
        self.fresh_fraction = w.fresh_fraction
        self.multi_gfn_fraction = w.multi_gfn_fraction
        self.multi_gfn_count = w.multi_gfn_count
        self.shared_pool_fraction = w.shared_pool_fraction
        self.accept_first_fraction = w.accept_first_fraction

    def _fresh(self, count: int) -> tuple[int, ...]:
        if count == 1:
            page = self.next_fresh
            self.next_fresh = page + 1 if page + 1 < self.end else self.start
            return (page,)
        out = []
        for _ in range(count):
            out.append(self.next_fresh)
            self.next_fresh += 1
            if self.next_fresh >= self.end:
                self.next_fresh = self.start
        return tuple(out)

    def next_op(self) -> Op:
        # Draws in a fixed order from the one rng: the run is a function of the seed.
        # `-log(1.0 - random()) / rate` is random.expovariate(rate), spelt out to save
        # a Python call per operation.
        random_ = self.random
        run_ns = int(-log(1.0 - random_()) / self.run_rate)
        rip = self.rip = self.rip + 16
        pick = random_()
        if pick >= self.access_cut:
            if pick < self.io_cut:
                return _new_op(_OP, (run_ns, IO, rip, (), True, 0))
            hold_ns = int(-log(1.0 - random_()) / self.hlt_rate)
            return _new_op(_OP, (run_ns, HLT, rip, (), True, hold_ns))
        if random_() < self.fresh_fraction:
            if self.multi_gfn_fraction and random_() < self.multi_gfn_fraction:
                return _new_op(_OP, (run_ns, ACCESS, rip, self._fresh(self.multi_gfn_count),
                                    True, 0))
            if self.shared_pool_fraction and random_() < self.shared_pool_fraction:
                layout = self.layout
                gpas: tuple[int, ...] = (layout.pool_start + self.rng.randrange(layout.pool_pages),)
            else:
                gpas = self._fresh(1)
            kind = ACCEPT if random_() < self.accept_first_fraction else ACCESS
            return _new_op(_OP, (run_ns, kind, rip, gpas, True, 0))
        used = (self.next_fresh - self.start) or 1
        return _new_op(_OP, (run_ns, ACCESS, rip, (self.start + self.rng.randrange(used),), True, 0))
