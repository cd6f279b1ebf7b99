"""One time-left estimate for a background job, shared by every place that shows it.

A training round reports progress stage after stage (proposals, teacher, teacher targets, student,
scoring), each counting from zero. `StageClock` follows the counts: a stage starts when the total
changes or the count goes back, and the estimate is that stage's own rate, never the whole job's.
Between stages (the count at its total) it says "finishing", not "100 %". Qt-free."""

from __future__ import annotations

import time


class StageClock:
    """`update(done, total)` per report; `text()` for a progress bar format."""

    def __init__(self, clock=time.monotonic) -> None:  # noqa: ANN001 - a time source, for tests
        self._clock = clock
        self.done = self.total = 0
        self._stage_started = clock()
        self._first_done = 0

    def update(self, done: int, total: int) -> None:
        if total != self.total or done < self.done:       # a new stage
            self._stage_started = self._clock()
            self._first_done = done
        self.done, self.total = done, total

    def seconds_left(self) -> float | None:
        """This stage's remaining time at its own rate; None before it can be told (2 s in)."""
        elapsed = self._clock() - self._stage_started
        progressed = self.done - self._first_done
        if progressed <= 0 or elapsed < 2 or self.done >= self.total:
            return None
        return elapsed / progressed * (self.total - self.done)

    def text(self) -> str:
        """'%p% · 3 min 05 s left', '%p%', or 'finishing…' at the end of a stage."""
        if self.total > 0 and self.done >= self.total:
            return "finishing…"
        left = self.seconds_left()
        return "%p%" if left is None else f"%p% · {duration(left)} left"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
