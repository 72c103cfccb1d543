"""The TDX module's leaves: which locks each takes in module 1.0 and 1.5 (MODEL.md 3)."""

from __future__ import annotations

from engine.locks import (
    OP_STATE,
    PAGE,
    SEPT_ENTRY,
    SEPT_TREE,
    TD_EPOCH,
    TDR,
    TDVPR,
    Plan,
    Step,
)
from engine.status import (
    OPERAND_ID_OP_STATE,
    OPERAND_ID_SEPT_TREE,
    OPERAND_ID_TD_EPOCH,
    OPERAND_ID_TDR,
    OPERAND_ID_TDVPR,
    OPERAND_RCX,
    OPERAND_RDX,
)

SH, EX = False, True

_TDR_SH = Step(TDR, SH, OPERAND_RDX)
_TDR_EX = Step(TDR, EX, OPERAND_RDX)
_OPS_SH = Step(OP_STATE, SH, OPERAND_ID_OP_STATE)
_TREE_SH = Step(SEPT_TREE, SH, OPERAND_ID_SEPT_TREE)
_TREE_EX = Step(SEPT_TREE, EX, OPERAND_ID_SEPT_TREE)
_ENTRY_EX = Step(SEPT_ENTRY, EX, OPERAND_RCX)
_OLD_PAGE_EX = Step(PAGE, EX, OPERAND_RCX)
_EPOCH_EX = Step(TD_EPOCH, EX, OPERAND_ID_TD_EPOCH)

# Lock sets of host leaves in module 1.5, in lock order. The new page that PAGE.ADD,
# SEPT.ADD and AUG take exclusively is a free host page nobody else can hold, so its try
# cannot fail: it is left out of the sets (the page a REMOVE frees is kept).
_LOCKS_15: dict[str, tuple[Step, ...]] = {
    "TDH.MEM.PAGE.ADD": (_TDR_EX,),
    "TDH.MEM.SEPT.ADD": (_TDR_SH, _OPS_SH, _TREE_SH, _ENTRY_EX),
    "TDH.MEM.PAGE.AUG": (_TDR_SH, _OPS_SH, _TREE_SH, _ENTRY_EX),
    "TDH.MEM.RANGE.BLOCK": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX),
    "TDH.MEM.RANGE.UNBLOCK": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX),
    "TDH.MEM.PAGE.REMOVE": (_TDR_SH, _OPS_SH, _TREE_SH, _ENTRY_EX, _OLD_PAGE_EX),
    "TDH.MEM.SEPT.REMOVE": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX, _OLD_PAGE_EX),
    "TDH.MEM.TRACK": (_TDR_SH, _OPS_SH, _EPOCH_EX),
    # vCPU setup and the measurement (tdh_vp_create.c, tdh_vp_addcx.c, tdh_vp_init.c,
    # tdh_mr_extend.c, tdh_mr_finalize.c in intel/tdx-module tdx_1.5). VP.CREATE names TDR
    # explicitly (RDX); ADDCX and VP.INIT reach it through the TDVPR's owner (implicit:
    # OPERAND_ID_TDR 0x80). The TDVPR/TDCX pages they take exclusively are the vCPU's own
    # (nobody else holds them before its first entry): left out, as the new pages above.
    # MR.EXTEND and MR.FINALIZE take TDR exclusive (the SEPT tree with it, implicitly),
    # FINALIZE naming it in RCX.
    "TDH.VP.CREATE": (_TDR_SH, _OPS_SH),
    "TDH.VP.ADDCX": (Step(TDR, SH, OPERAND_ID_TDR), _OPS_SH),
    "TDH.VP.INIT": (Step(TDR, SH, OPERAND_ID_TDR), _OPS_SH),
    "TDH.MR.EXTEND": (_TDR_EX,),
    "TDH.MR.FINALIZE": (Step(TDR, EX, OPERAND_RCX),),
    # tdh_mem_page_demote: TDR, op-state and the tree shared, the 2 MB entry host-side;
    # the new SEPT page (R8) is a free host page, left out like SEPT.ADD's.
    "TDH.MEM.PAGE.DEMOTE": (_TDR_SH, _OPS_SH, _TREE_SH, _ENTRY_EX),
    # tdh_mem_page_promote: the same, plus the PAMT entry of the SEPT page it frees
    # (exclusive) and, in is_sept_page_valid_for_merge, each of the 512 child entries
    # host-side (the engine's per-GPA lock of the 2 MB range stands for them).
    "TDH.MEM.PAGE.PROMOTE": (_TDR_SH, _OPS_SH, _TREE_SH, _ENTRY_EX, _OLD_PAGE_EX),
}
# Module 1.0 serialised every SEPT change: the tree lock is exclusive throughout.
_LOCKS_10: dict[str, tuple[Step, ...]] = {
    **_LOCKS_15,
    "TDH.MEM.PAGE.ADD": (_TDR_EX, _TREE_EX),
    "TDH.MEM.SEPT.ADD": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX),
    "TDH.MEM.PAGE.AUG": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX),
    "TDH.MEM.PAGE.REMOVE": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX, _OLD_PAGE_EX),
    "TDH.MEM.PAGE.DEMOTE": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX),
    "TDH.MEM.PAGE.PROMOTE": (_TDR_SH, _OPS_SH, _TREE_EX, _ENTRY_EX, _OLD_PAGE_EX),
}
# Guest TDCALLs on one page: the SEPT entry lock, guest side.
GUEST_LOCKS: dict[str, tuple[Step, ...]] = {
    "TDG.MEM.PAGE.ACCEPT": (_ENTRY_EX,),
    "TDG.MEM.PAGE.ATTR.RD": (_ENTRY_EX,),
    "TDG.MEM.PAGE.ATTR.WR": (_ENTRY_EX,),
}
# TDH.VP.ENTER: held while the guest runs (TDR and TDVPR shared), then the brief ones,
# released at VM entry (op-state, the tree when the zero-step filter fires, TD epoch).
VP_ENTER_HELD = (Step(TDR, SH, OPERAND_ID_TDR), Step(TDVPR, SH, OPERAND_ID_TDVPR))
VP_ENTER_BRIEF = (_OPS_SH, Step(TD_EPOCH, SH, OPERAND_ID_TD_EPOCH))
VP_ENTER_BRIEF_ZERO_STEP = (_OPS_SH, Step(SEPT_TREE, EX, OPERAND_ID_SEPT_TREE),
                            Step(TD_EPOCH, SH, OPERAND_ID_TD_EPOCH))


def host_locks(module_version: str) -> dict[str, tuple[Step, ...]]:
    """The host leaves' lock sets for a module version ("1.0" or "1.5")."""
    return _LOCKS_10 if module_version == "1.0" else _LOCKS_15


# The same lock sets compiled for LockTable.try_plan/release_plan (the hot path).
_PLANS_15 = {leaf: Plan(steps) for leaf, steps in _LOCKS_15.items()}
_PLANS_10 = {leaf: Plan(steps) for leaf, steps in _LOCKS_10.items()}
GUEST_PLANS = {leaf: Plan(steps) for leaf, steps in GUEST_LOCKS.items()}
VP_ENTER_HELD_PLAN = Plan(VP_ENTER_HELD)
VP_ENTER_BRIEF_PLAN = Plan(VP_ENTER_BRIEF)
VP_ENTER_BRIEF_ZERO_STEP_PLAN = Plan(VP_ENTER_BRIEF_ZERO_STEP)


def host_plans(module_version: str) -> dict[str, Plan]:
    """`host_locks(module_version)`, compiled."""
    return _PLANS_10 if module_version == "1.0" else _PLANS_15


# The wrapped leaves of the `bounded` seed patch (MODEL.md 5): TRACK is not among them.
SEPT_WRAPPED = frozenset((
    "TDH.MEM.PAGE.ADD", "TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG", "TDH.MEM.RANGE.BLOCK",
    "TDH.MEM.PAGE.REMOVE", "TDH.MEM.RANGE.UNBLOCK",
    # The v19-era large-page series issued DEMOTE through the same wrapper
    # (tdx_seamcall_sept in tdh_mem_page_demote).
    "TDH.MEM.PAGE.DEMOTE",
))
