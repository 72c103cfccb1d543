"""The TDX module's try-locks: shared/exclusive, host priority, per-GPA entry and page locks.

Every lock is a try-lock (MODEL.md 3): one atomic attempt, then success or an immediate
failure. A lock set is taken in lock order; at the first conflict everything taken so far
is released and the failing step names the operand. Since a try is instantaneous in
simulated time, "check every step, then take them all" is the same as "take in order,
release on failure", and cheaper.
"""

from __future__ import annotations

from typing import NamedTuple

from engine.errors import InvariantError
from engine.status import TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY

# Lock kinds. The first four are TD-wide shared/exclusive locks.
TDR, OP_STATE, SEPT_TREE, TD_EPOCH, TDVPR, SEPT_ENTRY, PAGE = range(7)
KIND_NAMES = ("TDR", "OP_STATE", "SEPT_TREE", "TD_EPOCH", "TDVPR", "SEPT_ENTRY", "PAGE")
# Kinds that carry a host-priority bit in module 1.5 (TD epoch and SEPT tree do not).
HP_KINDS = frozenset((TDR, OP_STATE, TDVPR, SEPT_ENTRY, PAGE))


class Step(NamedTuple):
    """One lock of a leaf's lock set: which, how, and the operand id a BUSY on it carries."""

    kind: int
    exclusive: bool
    operand_id: int


class Failure(NamedTuple):
    """A failed try: the operand's name and the full status the module returns."""

    operand: str
    status: int


class LockTable:
    """The lock state of one TD. Shared count > 0, -1 exclusive, 0 free."""

    __slots__ = ("td", "td_hp", "tdvpr", "tdvpr_hp", "entry", "entry_hp", "page", "page_hp",
                 "host_priority", "hp_count")

    def __init__(self, vcpus: int, host_priority: bool) -> None:
        self.td = [0, 0, 0, 0]
        self.td_hp = [False, False, False, False]
        self.tdvpr = [0] * vcpus
        self.tdvpr_hp = [False] * vcpus
        self.entry: dict[int, int] = {}
        self.entry_hp: set[int] = set()
        self.page: dict[int, int] = {}
        self.page_hp: set[int] = set()
        self.host_priority = host_priority
        self.hp_count = 0  # host-priority bits set: clearing is skipped while none are

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
        """Take every lock of `steps` or none; None on success, else the failing operand.

        On the per-attempt hot path: the state lookups are inlined on purpose.
        """
        td = self.td
        hp_on = self.host_priority
        for kind, exclusive, operand_id in steps:
            if kind < TDVPR:
                state = td[kind]
            elif kind == TDVPR:
                state = self.tdvpr[vcpu]
            elif kind == SEPT_ENTRY:
                state = self.entry.get(gpa, 0)
            else:
                state = self.page.get(gpa, 0)
            conflict = state != 0 if exclusive else state < 0
            if hp_on and kind != SEPT_TREE and kind != TD_EPOCH:
                if not host and self._hp(kind, vcpu, gpa):
                    return Failure(KIND_NAMES[kind], TDX_OPERAND_BUSY_HOST_PRIORITY | operand_id)
                if conflict:
                    if host:
                        self._set_hp(kind, vcpu, gpa, True)
                    return Failure(KIND_NAMES[kind], TDX_OPERAND_BUSY | operand_id)
            elif conflict:
                return Failure(KIND_NAMES[kind], TDX_OPERAND_BUSY | operand_id)
        clear_hp = host and hp_on and self.hp_count
        for kind, exclusive, _ in steps:
            delta = -1 if exclusive else 1
            if kind < TDVPR:
                td[kind] += delta
            elif kind == TDVPR:
                self.tdvpr[vcpu] += delta
            else:
                table = self.entry if kind == SEPT_ENTRY else self.page
                value = table.get(gpa, 0) + delta
                if value:
                    table[gpa] = value
                else:
                    del table[gpa]
            if clear_hp and kind in HP_KINDS and self._hp(kind, vcpu, gpa):
                self._set_hp(kind, vcpu, gpa, False)
        return None

    def release(self, steps: tuple[Step, ...], vcpu: int, gpa: int) -> None:
        """Give back every lock of `steps`, which the caller holds."""
        td = self.td
        for kind, exclusive, _ in steps:
            if kind < TDVPR:
                state = td[kind]
            elif kind == TDVPR:
                state = self.tdvpr[vcpu]
            else:
                state = (self.entry if kind == SEPT_ENTRY else self.page).get(gpa, 0)
            if (state != -1) if exclusive else (state <= 0):
                raise InvariantError(f"release of {KIND_NAMES[kind]} not held "
                                     f"{'exclusive' if exclusive else 'shared'}")
            delta = 1 if exclusive else -1
            if kind < TDVPR:
                td[kind] += delta
            elif kind == TDVPR:
                self.tdvpr[vcpu] += delta
            else:
                table = self.entry if kind == SEPT_ENTRY else self.page
                value = state + delta
                if value:
                    table[gpa] = value
                else:
                    del table[gpa]

    def idle(self) -> bool:
        """True when no lock of any kind is held (host-priority bits may remain)."""
        return not any(self.td) and not any(self.tdvpr) and not self.entry and not self.page
