"""Event-log records: the fields, their order, and the record kinds.

A record is a plain tuple in FIELDS order without `seq` (the simulation numbers
records as it hands them out): (t_ns, dur_ns, kind, actor, leaf, status, operand,
attempt, outcome, extra). `status` is the RAX integer (None for non-calls); `extra` is
None or a dict of further keys (a `control` record's changed fields, say).
"""

from __future__ import annotations

from typing import Any, Final

FIELDS = ("seq", "t_ns", "dur_ns", "kind", "actor", "leaf", "status", "operand", "attempt",
          "outcome")
# Indices into a record as the engine emits it (no seq).
T: Final = 0
DUR: Final = 1
KIND: Final = 2
ACTOR: Final = 3
LEAF: Final = 4
STATUS: Final = 5
OPERAND: Final = 6
ATTEMPT: Final = 7
OUTCOME: Final = 8
EXTRA: Final = 9

SEAMCALL: Final = "seamcall"
TDCALL: Final = "tdcall"
ZERO_STEP: Final = "zero_step"
ZERO_STEP_ARMED: Final = "zero_step_armed"
ZERO_STEP_DISARMED: Final = "zero_step_disarmed"
KICK: Final = "kick"
CONTROL: Final = "control"
KVM_BUG: Final = "kvm_bug"
MEMORY_FAULT: Final = "memory_fault"
HP_TIMEOUT: Final = "hp_timeout"
VM_DEAD: Final = "vm_dead"
STALL: Final = "stall"
IOCTL: Final = "ioctl"  # an ioctl's return to userspace (prefault, the TD build)
CALL_KINDS = frozenset((SEAMCALL, TDCALL))

SUCCESS: Final = "success"
BUSY: Final = "busy"
GIVEUP: Final = "giveup"
ERROR: Final = "error"
# Outcomes that end a logical call.
FINAL_OUTCOMES = frozenset((SUCCESS, GIVEUP, ERROR))

Record = tuple[Any, ...]
