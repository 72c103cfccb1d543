"""The TDX module's try-locks: shared/exclusive, host priority, per-GPA entry and page locks.

Every lock is a try-lock (MODEL.md 3): one atomic attempt, then success or an immediate
failure. A lock set is taken in lock order; at the first conflict everything taken so far
is released and the failing step names the operand. Since a try is instantaneous in
simulated time, "check every step, then take them all" is the same as "take in order,
release on failure", and cheaper.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from engine.errors import InvariantError
from engine.pagebytes import page_bytes
from engine.status import TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY

# Lock kinds. The first four are TD-wide shared/exclusive locks.
TDR: Final = 0
OP_STATE: Final = 1
SEPT_TREE: Final = 2
TD_EPOCH: Final = 3
TDVPR: Final = 4
SEPT_ENTRY: Final = 5
PAGE: Final = 6
GPA_EXCLUSIVE: Final = 255  # a per-GPA lock's byte when held exclusively
KIND_NAMES = ("TDR", "OP_STATE", "SEPT_TREE", "TD_EPOCH", "TDVPR", "SEPT_ENTRY", "PAGE")
# Kinds that carry a host-priority bit in module 1.5 (TD epoch and SEPT tree do not).
HP_KINDS: Final = frozenset((TDR, OP_STATE, TDVPR, SEPT_ENTRY, PAGE))


class Step(NamedTuple):
    """One lock of a leaf's lock set: which, how, and the operand id a BUSY on it carries."""

    kind: int
    exclusive: bool
    operand_id: int


class Failure(NamedTuple):
    """A failed try: the operand's name and the full status the module returns."""

    operand: str
    status: int


class Plan:
    """A lock set compiled for the hot path, built once per lock set.

    Each step is one int, `kind * 2 + exclusive`, so walking a plan reads ints, not
    tuples; `busy[i]` and `hp_busy[i]` are the Failures step i returns on a conflict and
    (to a guest) on a host-priority bit.
    """

    __slots__ = ("codes", "busy", "hp_busy")

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.codes = tuple(s.kind * 2 + int(s.exclusive) for s in steps)
        self.busy = tuple(Failure(KIND_NAMES[s.kind], TDX_OPERAND_BUSY | s.operand_id)
                          for s in steps)
        self.hp_busy = tuple(
            Failure(KIND_NAMES[s.kind], TDX_OPERAND_BUSY_HOST_PRIORITY | s.operand_id)
            for s in steps)


# Plans of the lock sets passed to try_acquire/release, by identity of the Step tuple.
_PLANS: dict[int, tuple[tuple[Step, ...], Plan]] = {}


def _plan_of(steps: tuple[Step, ...]) -> Plan:
    known = _PLANS.get(id(steps))
    if known is None or known[0] is not steps:
        known = _PLANS[id(steps)] = (steps, Plan(steps))
    return known[1]


class LockTable:
    """The lock state of one TD. Shared count > 0, -1 exclusive, 0 free.

    Per-GPA locks (SEPT entry, page) are a byte per guest page, exclusive stored as
    `GPA_EXCLUSIVE`, so at most 254 holders can share one (the module's lock sets take
    them exclusively only).

    `try_acquire`/`release` take a lock set as Step tuples; the engine's hot path calls
    `try_plan`/`release_plan` with the same sets compiled once into `Plan`s.
    """

    __slots__ = ("td", "td_hp", "tdvpr", "tdvpr_hp", "entry", "entry_hp", "page", "page_hp",
                 "host_priority", "hp_count")

    def __init__(self, vcpus: int, host_priority: bool, pages: int) -> None:
        self.td = [0, 0, 0, 0]
        self.td_hp = [False, False, False, False]
        self.tdvpr = [0] * vcpus
        self.tdvpr_hp = [False] * vcpus
        self.entry = page_bytes(pages)
        self.entry_hp: set[int] = set()
        self.page = page_bytes(pages)
        self.page_hp: set[int] = set()
        self.host_priority = host_priority
        self.hp_count = 0  # host-priority bits set: while none are, the fast path runs

    def _state(self, kind: int, vcpu: int, gpa: int) -> int:
        """A lock's state (off the hot path, which inlines this lookup)."""
        if kind < TDVPR:
            return self.td[kind]
        if kind == TDVPR:
            return self.tdvpr[vcpu]
        raw: int = (self.entry if kind == SEPT_ENTRY else self.page)[gpa]
        return -1 if raw == GPA_EXCLUSIVE else raw

    def _hp(self, kind: int, vcpu: int, gpa: int) -> bool:
        if kind < TDVPR:
            return self.td_hp[kind]
        if kind == TDVPR:
            return self.tdvpr_hp[vcpu]
        if kind == SEPT_ENTRY:
            return gpa in self.entry_hp
        return gpa in self.page_hp

    def _set_hp(self, kind: int, vcpu: int, gpa: int, value: bool) -> None:
        if self._hp(kind, vcpu, gpa) == value:
            return
        self.hp_count += 1 if value else -1
        if kind < TDVPR:
            self.td_hp[kind] = value
        elif kind == TDVPR:
            self.tdvpr_hp[vcpu] = value
        else:
            bits = self.entry_hp if kind == SEPT_ENTRY else self.page_hp
            if value:
                bits.add(gpa)
            else:
                bits.discard(gpa)

    def try_acquire(self, steps: tuple[Step, ...], vcpu: int, gpa: int, host: bool) -> Failure | None:
        """Take every lock of `steps` or none; None on success, else the failing operand."""
        return self.try_plan(_plan_of(steps), vcpu, gpa, host)

    def release(self, steps: tuple[Step, ...], vcpu: int, gpa: int) -> None:
        """Give back every lock of `steps`, which the caller holds."""
        self.release_plan(_plan_of(steps), vcpu, gpa)

    def try_plan(self, plan: Plan, vcpu: int, gpa: int, host: bool) -> Failure | None:
        """`try_acquire` of a compiled lock set: the per-attempt hot path.

        With no host-priority bit set (nearly always) a guest never meets one and a host
        never clears one, so only a conflict needs the bookkeeping.
        """
        if self.hp_count:
            return self._try_hp(plan, vcpu, gpa, host)
        td = self.td
        i = 0
        for code in plan.codes:
            kind = code >> 1
            if kind < TDVPR:
                state: int = td[kind]
            elif kind == TDVPR:
                state = self.tdvpr[vcpu]
            else:
                state = (self.entry if kind == SEPT_ENTRY else self.page)[gpa]
                if state == GPA_EXCLUSIVE:
                    state = -1
            if state < 0 or (code & 1 and state):
                if host and kind in HP_KINDS and self.host_priority:
                    self._set_hp(kind, vcpu, gpa, True)
                return plan.busy[i]
            i += 1
        self._take(plan, vcpu, gpa)
        return None

    def _try_hp(self, plan: Plan, vcpu: int, gpa: int, host: bool) -> Failure | None:
        """`try_plan` while some host-priority bit is set (module 1.5 only)."""
        i = 0
        for code in plan.codes:
            kind = code >> 1
            state = self._state(kind, vcpu, gpa)
            conflict = state != 0 if code & 1 else state < 0
            if kind in HP_KINDS:
                if not host and self._hp(kind, vcpu, gpa):
                    return plan.hp_busy[i]
                if conflict:
                    if host:
                        self._set_hp(kind, vcpu, gpa, True)
                    return plan.busy[i]
            elif conflict:
                return plan.busy[i]
            i += 1
        self._take(plan, vcpu, gpa)
        if host:
            for code in plan.codes:
                kind = code >> 1
                if kind in HP_KINDS and self._hp(kind, vcpu, gpa):
                    self._set_hp(kind, vcpu, gpa, False)
        return None

    def _take(self, plan: Plan, vcpu: int, gpa: int) -> None:
        for code in plan.codes:
            self._add(code >> 1, vcpu, gpa, -1 if code & 1 else 1)

    def release_plan(self, plan: Plan, vcpu: int, gpa: int) -> None:
        """`release` of a compiled lock set."""
        for code in plan.codes:
            kind = code >> 1
            state = self._state(kind, vcpu, gpa)
            if (state != -1) if code & 1 else (state <= 0):
                raise InvariantError(f"release of {KIND_NAMES[kind]} not held "
                                     f"{'exclusive' if code & 1 else 'shared'}")
            self._add(kind, vcpu, gpa, 1 if code & 1 else -1)

    def _add(self, kind: int, vcpu: int, gpa: int, delta: int) -> None:
        """Add `delta` to a lock's state (-1 takes exclusive or gives back shared)."""
        if kind < TDVPR:
            state: int = self.td[kind]
            self.td[kind] = state + delta
        elif kind == TDVPR:
            state = self.tdvpr[vcpu]
            self.tdvpr[vcpu] = state + delta
        else:
            table = self.entry if kind == SEPT_ENTRY else self.page
            raw: int = table[gpa]
            state = (-1 if raw == GPA_EXCLUSIVE else raw) + delta
            if state >= GPA_EXCLUSIVE:
                raise InvariantError(f"more than {GPA_EXCLUSIVE - 1} holders share "
                                     f"{KIND_NAMES[kind]} of page {gpa:#x}")
            table[gpa] = GPA_EXCLUSIVE if state < 0 else state

    def idle(self) -> bool:
        """True when no lock of any kind is held (host-priority bits may remain)."""
        return (not any(self.td) and not any(self.tdvpr) and not any(self.entry)
                and not any(self.page))
