"""A host thread that flips a GPA range between private and shared (KVM_SET_MEMORY_ATTRIBUTES)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from engine.pagebytes import fill
from engine.script import MAX_REPEAT, MAX_TIME_US, PAGE_SHIFT, Checker
from engine.zap import Zapper

if TYPE_CHECKING:
    from engine.sim import Simulation

ATTRIBUTES: Final = "attributes"  # the record kind of a change (an instant)
STAT: Final = "attribute_changes"


@dataclass(frozen=True)
class AttributesSpec:
    """An `[[attributes]]` table: flip pages lo..hi every `every_ns` from `start_ns`,
    `count` times (0: until the run ends), from the attributes the range starts with."""

    lo: int
    hi: int
    every_ns: int
    start_ns: int
    count: int = 0


def parse_attributes(t: dict[str, Any], path: str, check: Checker,
                     span: tuple[int, int] | None) -> AttributesSpec | None:
    """The keys of an `[[attributes]]` table (its gpa and pages are `span`)."""
    every = check.integer(t, "every_us", path, 1, MAX_TIME_US, 1)
    start = check.integer(t, "start_us", path, 0, MAX_TIME_US, every)
    count = check.integer(t, "count", path, 1, MAX_REPEAT, 0) if "count" in t else 0
    return AttributesSpec(span[0], span[1], every * 1000, start * 1000, count) if span else None


class AttributeFlipper:
    """Userspace's KVM_SET_MEMORY_ATTRIBUTES on a range, alternately to shared and back.

    kvm_vm_set_mem_attributes (virt/kvm/kvm_main.c) brackets the change with
    kvm_mmu_invalidate_begin/end, so faults on the range return RET_PF_RETRY meanwhile
    (an invalidation window, as engine.hostactors.Invalidation's); before the new
    attributes are stored, kvm_arch_pre_set_memory_attributes zaps the mappings that
    no longer fit: going shared, the range's private pages are zapped (BLOCK, TRACK,
    kick, REMOVE by the TDP MMU under mmu_lock write, engine.zap); going private there
    is no private mapping to zap (the shared EPT is not modelled). An `attributes`
    record marks each change as it begins (`action` shared or private, `gpa`, `pages`).
    A change still zapping when the next is due delays that one.
    """

    def __init__(self, sim: Simulation, name: str, spec: AttributesSpec, zapper: Zapper) -> None:
        self.sim = sim
        self.name = name
        self.spec = spec
        self.range = (spec.lo, spec.hi)
        self.zapper = zapper
        self.changes = 0
        # The range's attributes as this thread set them last: at first, its first page's
        # (a [[shared]] range starts shared, and then its first change is to private).
        self.shared = bool(sim.shared_attr[spec.lo])
        sim.at(spec.start_ns, self._change)

    def _change(self, _: Any) -> None:
        sim = self.sim
        spec = self.spec
        to_shared = not self.shared
        self.changes += 1
        sim.stats[STAT] += 1
        sim.emit((sim.now, 0, ATTRIBUTES, self.name, None, None, None, None, None,
                  {"action": "shared" if to_shared else "private",
                   "gpa": hex(spec.lo << PAGE_SHIFT), "pages": spec.hi - spec.lo}))
        sim.invalidations.append(self.range)  # kvm_mmu_invalidate_begin
        if to_shared:
            self.zapper.zap_now(self._stored)
        else:
            self._stored()

    def _stored(self) -> None:
        """The attributes are stored (kvm_range_has_memory_attributes sees them) and the
        invalidation ends (kvm_mmu_invalidate_end)."""
        sim = self.sim
        spec = self.spec
        self.shared = not self.shared
        fill(sim.shared_attr, spec.lo, spec.hi, 1 if self.shared else 0)
        sim.invalidations.remove(self.range)
        if spec.count and self.changes >= spec.count:
            return
        due = spec.start_ns + self.changes * spec.every_ns
        sim.at(max(sim.now, due), self._change)


def install_attributes(sim: Simulation, spec: AttributesSpec, index: int, zaps: int) -> None:
    """The flipper `attributes<index>` and its on-demand zapper `zap<zaps>`, in `sim`."""
    zapper = Zapper(sim, zaps, spec.hi - spec.lo, 0, 0, (), ((spec.lo, spec.hi),),
                    on_demand=True)
    sim.host_actors.append(AttributeFlipper(sim, f"attributes{index}", spec, zapper))
    sim.host_actors.append(zapper)
