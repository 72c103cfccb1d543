"""TDX status codes, operand ids and leaf numbers (MODEL.md sections 1 and 2)."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

# Status classes: bits 63:32 of RAX.
TDX_SUCCESS: Final = 0x0000000000000000
TDX_OPERAND_BUSY: Final = 0x8000020000000000
TDX_PREVIOUS_TLB_EPOCH_BUSY: Final = 0x8000020100000000
TDX_OPERAND_BUSY_HOST_PRIORITY: Final = 0x8000020400000000
TDX_HOST_PRIORITY_BUSY_TIMEOUT: Final = 0x9000020500000000
TDX_EPT_WALK_FAILED: Final = 0xC0000B0000000000
TDX_TLB_TRACKING_NOT_DONE: Final = 0xC0000B0800000000
TDX_GPA_RANGE_NOT_BLOCKED: Final = 0xC0000B0600000000
TDX_PAGE_SIZE_MISMATCH: Final = 0xC0000B0B00000000
STATUS_CLASS_MASK: Final = 0xFFFFFFFF00000000
BUSY_CLASSES = (TDX_OPERAND_BUSY, TDX_PREVIOUS_TLB_EPOCH_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY)

# Operand ids: bits 31:0 of a BUSY status.
OPERAND_RCX: Final = 0x01
OPERAND_RDX: Final = 0x02
OPERAND_R8: Final = 0x08
OPERAND_ID_TDR: Final = 0x80
OPERAND_ID_TDVPR: Final = 0x82
OPERAND_ID_TDCS: Final = 0x90
OPERAND_ID_SEPT_TREE: Final = 0x92
OPERAND_ID_SEPT_ENTRY: Final = 0x93
OPERAND_ID_TD_EPOCH: Final = 0xA9
OPERAND_ID_OP_STATE: Final = 0xAC

# The seed patch's constant, reproduced by construction below.
TDX_ERROR_SEPT_BUSY: Final = TDX_OPERAND_BUSY | OPERAND_ID_SEPT_TREE

# Operand names used in events, stats and frames, in lock order.
OPERANDS = ("TDR", "OP_STATE", "SEPT_TREE", "SEPT_ENTRY", "PAGE", "TD_EPOCH", "TDVPR")
# Every operand id a BUSY on that operand may carry.
OPERAND_IDS: dict[str, tuple[int, ...]] = {
    "SEPT_TREE": (OPERAND_ID_SEPT_TREE,),
    "SEPT_ENTRY": (OPERAND_RCX, OPERAND_ID_SEPT_ENTRY),
    "TDR": (OPERAND_RDX, OPERAND_ID_TDR),
    "TDVPR": (OPERAND_ID_TDVPR,),
    "OP_STATE": (OPERAND_ID_OP_STATE,),
    "TD_EPOCH": (OPERAND_ID_TD_EPOCH, 0),
    "PAGE": (OPERAND_R8, OPERAND_RCX),
}

# TD exit reasons (bits 31:0 of a successful TDH.VP.ENTER).
EXIT_EXTERNAL_INTERRUPT: Final = 1
EXIT_HLT: Final = 12
EXIT_IO: Final = 30
EXIT_EPT_VIOLATION: Final = 48

# Leaf numbers (host SEAMCALLs and guest TDCALLs).
SEAMCALL_LEAVES: dict[str, int] = {
    "TDH.VP.ENTER": 0,
    "TDH.MEM.PAGE.ADD": 2,
    "TDH.MEM.SEPT.ADD": 3,
    "TDH.VP.ADDCX": 4,
    "TDH.MEM.PAGE.AUG": 6,
    "TDH.MEM.RANGE.BLOCK": 7,
    "TDH.VP.CREATE": 10,
    "TDH.MEM.PAGE.DEMOTE": 15,
    "TDH.MR.EXTEND": 16,
    "TDH.MR.FINALIZE": 17,
    "TDH.VP.INIT": 22,
    "TDH.MEM.PAGE.PROMOTE": 23,
    "TDH.MEM.PAGE.REMOVE": 29,
    "TDH.MEM.SEPT.REMOVE": 30,
    "TDH.MEM.TRACK": 38,
    "TDH.MEM.RANGE.UNBLOCK": 39,
}
TDCALL_LEAVES: dict[str, int] = {
    "TDG.MEM.PAGE.ACCEPT": 6,
    "TDG.MEM.PAGE.ATTR.RD": 23,
    "TDG.MEM.PAGE.ATTR.WR": 24,
}
LEAVES = tuple(SEAMCALL_LEAVES) + tuple(TDCALL_LEAVES)


def status_class(status: int) -> int:
    """Bits 63:32 of a status, as callers compare it."""
    return status & STATUS_CLASS_MASK


def is_busy(status: int) -> bool:
    """True for every BUSY-class status (the ones a caller may retry)."""
    return (status & STATUS_CLASS_MASK) in BUSY_CLASSES


@lru_cache(maxsize=4096)
def status_hex(status: int) -> str:
    """`0x` and 16 hex digits, exactly as the event log writes RAX."""
    return "0x%016X" % status
