"""Pace: achieved against requested simulated speed, and frames per second, over the last second."""

from __future__ import annotations

from collections import deque
from typing import Any

WINDOW_S = 1.0
LAG_SHARE = 0.9  # behind by more than 10% of the requested simulated time: lagging


class Pace:
    """Per frame: wall time, simulated time reached, and simulated time requested so far.

    Requested time grows by speed x wall time while running (a speed change counts from
    when it was made); the pace is what the engine achieved of that over the last second.
    """

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int, float]] = deque()
        self._requested_ns = 0.0
        self._last_wall: float | None = None

    def restart(self) -> None:
        """Running again (or a new run): pauses are not counted as falling behind."""
        self._marks.clear()
        self._last_wall = None

    def tick(self, wall: float, sim_ns: int, speed: float) -> dict[str, Any]:
        """Note a frame at `wall`; the pace over the last second as the frame carries it."""
        if self._last_wall is not None:
            self._requested_ns += speed * 1000 * (wall - self._last_wall)
        self._last_wall = wall
        marks = self._marks
        marks.append((wall, sim_ns, self._requested_ns))
        while len(marks) > 2 and marks[1][0] <= wall - WINDOW_S:
            marks.popleft()
        first_wall, first_ns, first_req = marks[0]
        span_s = wall - first_wall
        requested = self._requested_ns - first_req
        ratio = (sim_ns - first_ns) / requested if requested > 0 else 1.0
        return {"ratio": round(ratio, 4),
                "fps": round((len(marks) - 1) / span_s, 2) if span_s > 0 else 0.0,
                "achieved_speed": round((sim_ns - first_ns) / 1000 / span_s, 1) if span_s > 0 else 0.0,
                "requested_speed": speed,
                "lagging": requested > 0 and ratio < LAG_SHARE}
