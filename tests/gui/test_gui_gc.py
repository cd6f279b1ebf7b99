"""Garbage is collected on the GUI thread only (app.gui_gc): a Qt wrapper collected on a worker
thread deadlocked the app with the GUI thread."""

from __future__ import annotations

import gc
import threading


def test_workers_switch_automatic_collection_off_and_the_gui_timer_collects(qtbot):
    from app.gui_gc import collect_on_the_gui_thread
    from app.workers import Workers

    workers = Workers()
    try:
        collector = collect_on_the_gui_thread()
        assert not gc.isenabled() and collector.timer.isActive()

        class Cycle:
            pass

        collected_on = []
        for _ in range(collector.threshold[0] + 50):        # garbage cycles past the threshold
            a, b = Cycle(), Cycle()
            a.other, b.other = b, a
        marker = Cycle()
        marker.self = marker
        import weakref

        weakref.finalize(marker, lambda: collected_on.append(threading.current_thread()))
        del marker, a, b
        qtbot.waitUntil(lambda: bool(collected_on), timeout=5000)
        assert collected_on == [threading.main_thread()]
    finally:
        workers.shutdown()
