"""One time-left estimate per stage (app.progress_clock), the same in the training panel and the
status bar: each stage at its own rate, 'finishing…' between stages instead of 100 %."""

from __future__ import annotations

from app.progress_clock import StageClock, duration


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_stage_is_estimated_at_its_own_rate():
    now = FakeTime()
    clock = StageClock(now)
    clock.update(0, 100)                       # proposals: fast
    now.now = 4.0
    clock.update(50, 100)
    assert clock.seconds_left() == 4.0 and clock.text() == "%p% · 4 s left"
    clock.update(100, 100)
    assert clock.text() == "finishing…"         # not "100 %" while the next stage starts
    now.now = 10.0
    clock.update(0, 10)                        # the teacher: slow steps, a new rate
    assert clock.text() == "%p%"               # too early to tell
    now.now = 40.0
    clock.update(3, 10)
    assert clock.seconds_left() == 70.0 and clock.text() == "%p% · 1 min 10 s left"
    now.now = 41.0
    clock.update(1, 10)                        # counts going back: another stage
    assert clock.seconds_left() is None


def test_durations_read_as_words():
    assert [duration(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]
