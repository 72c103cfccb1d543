"""Event-log records: the fields, their order, and the record kinds.

A record is a plain sequence in FIELDS order without `seq` (the simulation numbers
records as it hands them out): (t_ns, dur_ns, kind, actor, leaf, status, operand,
attempt, outcome, extra). `status` is the RAX integer (None for non-calls); `extra` is
None or a dict of further keys (a `control` record's changed fields, say).
"""

from __future__ import annotations

from typing import Any

FIELDS = ("seq", "t_ns", "dur_ns", "kind", "actor", "leaf", "status", "operand", "attempt",
          "outcome")
# Indices into a record as the engine emits it (no seq).
T, DUR, KIND, ACTOR, LEAF, STATUS, OPERAND, ATTEMPT, OUTCOME, EXTRA = range(10)

SEAMCALL = "seamcall"
TDCALL = "tdcall"
ZERO_STEP = "zero_step"
ZERO_STEP_ARMED = "zero_step_armed"
ZERO_STEP_DISARMED = "zero_step_disarmed"
KICK = "kick"
CONTROL = "control"
KVM_BUG = "kvm_bug"
MEMORY_FAULT = "memory_fault"
HP_TIMEOUT = "hp_timeout"
CALL_KINDS = frozenset((SEAMCALL, TDCALL))

SUCCESS = "success"
BUSY = "busy"
GIVEUP = "giveup"
ERROR = "error"
# Outcomes that end a logical call.
FINAL_OUTCOMES = frozenset((SUCCESS, GIVEUP, ERROR))

Record = tuple[Any, ...] | list[Any]
