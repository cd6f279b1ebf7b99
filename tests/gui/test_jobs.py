"""JobSlot: one job at a time per feature, its outcome relayed, stale results dropped."""

from __future__ import annotations

import threading

import pytest

from app.jobs import JobSlot
from app.workers import Workers
from engine.errors import UserError


@pytest.fixture
def workers(qtbot, tmp_path):
    w = Workers()
    with qtbot.waitSignal(w.project_opened, timeout=30000):
        w.open_project(tmp_path / "project")
    yield w
    w.shutdown()


def _wait_for(gate: threading.Event, value: object):
    def job(store, progress, should_stop):
        progress(1, 2)
        gate.wait(20)
        return value
    return job


def test_one_job_at_a_time_with_progress_result_and_busy_state(qtbot, workers):
    slot = JobSlot(workers)
    busy, done, progress = [], [], []
    slot.busy_changed.connect(busy.append)
    slot.progress.connect(lambda d, t: progress.append((d, t)))
    gate = threading.Event()
    slot.start("First", _wait_for(gate, "first"), on_done=done.append)
    assert slot.busy and slot.job.title == "First"
    with pytest.raises(UserError, match="First is still running"):
        slot.start("Second", _wait_for(gate, "second"))
    with qtbot.waitSignal(slot.finished, timeout=20000) as finished:
        gate.set()
    assert finished.args == ["first"] and done == ["first"]
    qtbot.waitUntil(lambda: not slot.busy, timeout=5000)
    assert busy == [True, False] and (1, 2) in progress


def test_cancel_and_failure(qtbot, workers):
    slot = JobSlot(workers)
    gate = threading.Event()
    slot.start("Cancelled", _wait_for(gate, "never"))
    slot.cancel()
    with qtbot.waitSignal(slot.cancelled, timeout=20000):
        gate.set()
    qtbot.waitUntil(lambda: not slot.busy, timeout=5000)

    def broken(store, progress, should_stop):
        raise UserError("Bad setting.")

    with qtbot.waitSignal(slot.failed, timeout=20000) as failed:
        slot.start("Broken", broken)
    assert str(failed.args[0]) == "Bad setting."


def test_a_result_for_a_project_no_longer_open_is_dropped(qtbot, workers, tmp_path):
    slot = JobSlot(workers)
    done = []
    slot.finished.connect(done.append)
    gate = threading.Event()
    slot.start("Old project", _wait_for(gate, "old"), on_done=done.append)
    with qtbot.waitSignal(workers.project_opened, timeout=30000):
        workers.open_project(tmp_path / "other")
    with qtbot.waitSignal(slot.cancelled, timeout=20000):
        gate.set()
    qtbot.waitUntil(lambda: not slot.busy, timeout=5000)
    assert done == []
