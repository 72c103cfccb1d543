"""The zero-step attack filter of one vCPU (MODEL.md section 4)."""

from __future__ import annotations

from typing import Final

THRESHOLD: Final = 6  # 2 instruction-fetch faults + 2 for each of 2 operands
MAX_GPAS: Final = 32


class ZeroStepFilter:
    """Counts EPT-violation exits at one RIP and keeps the GPAs it logged once armed.

    Counting (MODEL.md 4, "Counting in numbers"): a counted exit at a RIP other than the
    one at the last TDH.VP.ENTER resets the counter and the list and counts as the first
    exit at its RIP; exits 1..6 at one RIP raise the counter; from the 7th on, each
    faulting GPA is logged (deduplicated, at most 32). A non-empty list arms the filter:
    every later TDH.VP.ENTER tries the SEPT tree lock exclusively.
    """

    __slots__ = ("counter", "gpas", "entry_rip")

    def __init__(self) -> None:
        self.counter = 0
        self.gpas: list[int] = []
        self.entry_rip = -1

    @property
    def armed(self) -> bool:
        return bool(self.gpas)

    def on_entry(self, rip: int) -> None:
        """Record the guest RIP at a TDH.VP.ENTER that entered the guest."""
        self.entry_rip = rip

    def on_ept_exit(self, rip: int, gpa: int) -> int:
        """Count one EPT-violation exit on a private GPA.

        Returns +1 when this exit armed the filter, -1 when it disarmed it, else 0.
        """
        was_armed = bool(self.gpas)
        if rip != self.entry_rip:
            self.counter = 0
            self.gpas.clear()
        if self.counter < THRESHOLD:
            self.counter += 1
        elif gpa not in self.gpas and len(self.gpas) < MAX_GPAS:
            self.gpas.append(gpa)
        armed = bool(self.gpas)
        return (armed and not was_armed) - (was_armed and not armed)
