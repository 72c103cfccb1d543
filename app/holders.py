"""Which leaves could have held the lock a BUSY met, from the module's lock sets: the page's
caption names those that ran in its window ("SEPT_TREE: TDH.MEM.PAGE.AUG vs
TDH.MEM.RANGE.BLOCK")."""

from __future__ import annotations

from engine.locks import KIND_NAMES, Step
from engine.module import (
    GUEST_LOCKS,
    VP_ENTER_BRIEF,
    VP_ENTER_BRIEF_ZERO_STEP,
    VP_ENTER_HELD,
    host_locks,
)

VP_ENTER = "TDH.VP.ENTER"
# Lock holders the lock sets alone cannot show: TDH.VP.ENTER holds the SEPT tree
# exclusively only when the zero-step filter fires, so it is named when the window has
# zero-step activations (the frames' `zero_step` series).
HOLDERS = [{"operand": "SEPT_TREE", "leaf": VP_ENTER, "label": "zero-step", "series": "zero_step"}]


def _lock_sets(module_version: str, *, zero_step: bool) -> dict[str, tuple[Step, ...]]:
    sets = dict(host_locks(module_version))
    sets[VP_ENTER] = VP_ENTER_HELD + (VP_ENTER_BRIEF_ZERO_STEP if zero_step else VP_ENTER_BRIEF)
    sets.update(GUEST_LOCKS)
    return sets


def conflicts(module_version: str) -> dict[str, dict[str, list[str]]]:
    """operand -> failing leaf -> the leaves whose lock set takes that lock in a mode that
    conflicts with the failing leaf's (either of the two exclusive), in lock-set order.

    A try-lock fails only against a holder (MODEL.md 3), so the holder of a BUSY is among
    these. Per-GPA and per-vCPU locks (SEPT entry, page, TDVPR) conflict only on the same
    GPA or vCPU, which a window's counts cannot tell: the list names the candidates.
    TDH.VP.ENTER requests the SEPT tree exclusively when zero-step fires, but is listed as
    its holder only through HOLDERS.
    """
    requests = _lock_sets(module_version, zero_step=True)
    holds = _lock_sets(module_version, zero_step=False)
    out: dict[str, dict[str, list[str]]] = {}
    for leaf, steps in requests.items():
        for step in steps:
            holders = [other for other, theirs in holds.items()
                       if any(s.kind == step.kind and (s.exclusive or step.exclusive) for s in theirs)]
            if holders:
                out.setdefault(KIND_NAMES[step.kind], {})[leaf] = holders
    return out


CONFLICTS = {version: conflicts(version) for version in ("1.0", "1.5")}
