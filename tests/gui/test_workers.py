"""The background helper: serial database lane, pool, jobs, stale-result dropping."""

from __future__ import annotations

import threading
import time

import pytest

from app.workers import Workers, describe_error
from engine.errors import UserError


@pytest.fixture
def workers(qtbot, tmp_path):
    w = Workers()
    with qtbot.waitSignal(w.project_opened, timeout=30000):
        w.open_project(tmp_path / "project")
    yield w
    w.shutdown()


def test_db_runs_in_order_off_the_gui_thread(qtbot, workers):
    gui_thread = threading.get_ident()
    seen = []

    def record(store, value):
        assert threading.get_ident() != gui_thread
        assert store is workers.store
        time.sleep(0.01)
        return value

    for value in range(5):
        workers.db(record, value, on_done=seen.append)
    qtbot.waitUntil(lambda: len(seen) == 5, timeout=20000)
    assert seen == [0, 1, 2, 3, 4]


def test_keyed_requests_drop_stale_results(qtbot, workers):
    seen = []
    gate = threading.Event()
    workers.db(lambda store: gate.wait(5))           # hold the lane
    for value in range(4):
        workers.db(lambda store, v: v, value, key="query", on_done=seen.append)
    gate.set()
    qtbot.waitUntil(lambda: seen == [3], timeout=20000)
    qtbot.wait(50)
    assert seen == [3]


def test_cancel_drops_a_result_and_errors_go_to_handlers(qtbot, workers):
    seen, errors = [], []
    request = workers.pool(lambda: time.sleep(0.05) or "late", on_done=seen.append)
    workers.cancel(request)
    assert not workers.is_current(request)
    workers.db(lambda store: (_ for _ in ()).throw(UserError("Bad folder.")), on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=20000)
    assert seen == []
    assert describe_error(errors[0]) == ("Bad folder.", None)
    with qtbot.waitSignal(workers.error, timeout=20000) as blocker:
        workers.db(lambda store: 1 / 0)
    message, details = describe_error(blocker.args[0])
    assert "ZeroDivisionError" in message and "Traceback" in details


def test_job_progress_cancel_and_result(qtbot, workers):
    def count(store, n, progress, should_stop):
        for i in range(n):
            if should_stop():
                return i
            progress(i + 1, n)
            time.sleep(0.002)
        return n

    progress = []
    job = workers.start_job("Counting", count, 20, on_progress=lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(job.finished, timeout=20000) as blocker:
        pass
    assert blocker.args == [20] and progress[-1] == (20, 20)
    assert workers.running_jobs() == []

    slow = workers.start_job("Slow", lambda store, progress, should_stop:
                             [time.sleep(0.01) for _ in range(500) if not should_stop()], gpu=True)
    slow.cancel()
    with qtbot.waitSignal(slow.cancelled, timeout=20000):
        pass


def test_switching_project_drops_old_results(qtbot, workers, tmp_path):
    seen = []
    workers.db(lambda store: time.sleep(0.05) or "old", on_done=seen.append)
    with qtbot.waitSignal(workers.project_opened, timeout=30000):
        workers.open_project(tmp_path / "other")
    workers.db(lambda store: store.paths.root.name, on_done=seen.append)
    qtbot.waitUntil(lambda: bool(seen), timeout=20000)
    assert seen == ["other"]
