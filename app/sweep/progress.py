"""Progress on the terminal: rows done of the total, failures, time left."""

from __future__ import annotations

import time
from typing import IO

from app.sweep.driver import Progress


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "time left unknown yet"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"about {seconds // 3600} h {seconds % 3600 // 60:02d} min left"
    if seconds >= 60:
        return f"about {seconds // 60} min {seconds % 60:02d} s left"
    return f"about {seconds} s left"


class Printer:
    """One line rewritten in place on a terminal; a line every 10 s into a file or pipe."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = 0.0
        self.shown = False
        self.ended = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.done + progress.failed >= progress.total
        if self.ended or (not self.tty and now - self.last < 10 and not finished):
            return
        self.ended = finished
        self.last = now
        failed = f", {progress.failed} failed" if progress.failed else ""
        eta = "done" if finished else duration(progress.eta_s)
        line = (f"rows {progress.done}/{progress.total} "
                f"({100 * progress.done / max(progress.total, 1):.1f}%){failed}, {eta}")
        if self.tty:
            self.out.write(f"\r{line:70}")
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.shown = True

    def end(self) -> None:
        if self.tty and self.shown:
            self.out.write("\n")
            self.out.flush()
