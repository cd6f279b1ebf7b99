"""Python's garbage collector runs only on the GUI thread.

The cyclic collector runs in whichever thread happens to allocate when a threshold is crossed. If
that is a worker thread (the database thread compiling a query, a decoding task) and the garbage
holds a Python wrapper of a Qt object, the Qt object is destroyed on that thread: it takes a Qt lock
and then waits for the GIL, while the GUI thread holds the GIL and waits for that lock. The app froze
this way (seen with py-spy: `gc_collect_main` -> `QObject::~QObject` on the thread "mlic-db").

As pyqtgraph's `GarbageCollector` does (its import alone costs half a second at start-up, before
the first paint), automatic collection is switched off and a GUI-thread timer collects each
generation when its threshold is crossed.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

_collector: GuiThreadCollector | None = None


class GuiThreadCollector(QObject):
    """Collects garbage every `interval_ms` on the thread that made it (the GUI thread)."""

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(interval_ms)

    def collect(self) -> None:
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.threshold[generation]:
                break
            gc.collect(generation)


def collect_on_the_gui_thread() -> GuiThreadCollector:
    """Start the collector once per process (call it on the GUI thread, a QApplication existing)."""
    global _collector
    if _collector is None:
        _collector = GuiThreadCollector()
    return _collector
