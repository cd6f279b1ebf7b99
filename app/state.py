"""The open project as the GUI sees it: classes, active model versions, counts, the undo stack,
and "what changed" signals that views refresh from (as in Anki: edits go through one place, views
listen). All reads and writes go through `Workers` (database thread); nothing here blocks.

Other parts of the app (training panel, batch tagging) tell the views about their results with
`models_changed()` / `images_changed()` rather than poking views directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QColor, QUndoStack

from app.workers import Workers
from engine.store import queries as gq


@dataclass(frozen=True)
class ClassInfo:
    class_id: int
    name: str
    color: str
    shortcut: str | None
    threshold: float

    @property
    def qcolor(self) -> QColor:
        colour = QColor(self.color)
        return colour if colour.isValid() else QColor("#4e79a7")


def _load_classes(store) -> list[ClassInfo]:
    return [ClassInfo(c.id, c.name, c.color, c.shortcut, float(c.threshold))
            for c in store.classes.list()]


class ProjectState(QObject):
    """Shared, read-mostly state of the open project plus change notifications."""

    classes_changed = Signal()
    versions_changed = Signal()           # active teacher/student (suggestions, regions) changed
    tags_changed = Signal(object)         # set of image ids whose tags changed
    images_changed = Signal()             # images added/removed (intake, demo import)
    counts_changed = Signal(object)       # gq.ProjectCounts

    def __init__(self, workers: Workers, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.undo_stack = QUndoStack(self)
        self.classes: dict[int, ClassInfo] = {}
        self.versions = gq.Versions()
        self.counts = gq.ProjectCounts()
        self._counts_timer = QTimer(self, singleShot=True, interval=300)
        self._counts_timer.timeout.connect(self._fetch_counts)
        self.tags_changed.connect(lambda _ids: self.refresh_counts())
        self.images_changed.connect(self.refresh_counts)

    # -- loading ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Classes, versions and counts of a freshly opened project."""
        self.undo_stack.clear()
        self.reload_classes()
        self.reload_versions()

    def reload_classes(self) -> None:
        self.workers.db(_load_classes, key="state-classes", on_done=self._set_classes)

    def reload_versions(self) -> None:
        self.workers.db(gq.active_versions, key="state-versions", on_done=self._set_versions)

    def refresh_counts(self) -> None:
        """Recount soon (debounced: a burst of edits recounts once)."""
        self._counts_timer.start()

    def _fetch_counts(self) -> None:
        self.workers.db(gq.project_counts, self.versions, key="state-counts",
                        on_done=self._set_counts)

    def _set_classes(self, classes: list[ClassInfo]) -> None:
        self.classes = {c.class_id: c for c in classes}
        self.classes_changed.emit()
        self.refresh_counts()

    def _set_versions(self, versions: gq.Versions) -> None:
        self.versions = versions
        self.versions_changed.emit()
        self.refresh_counts()

    def _set_counts(self, counts: gq.ProjectCounts) -> None:
        self.counts = counts
        self.counts_changed.emit(counts)

    def stop(self) -> None:
        """The window is closing: no more deferred reads."""
        self._counts_timer.stop()

    # -- notifications from jobs -----------------------------------------------------------------
    def models_changed(self) -> None:
        """A training run completed, a model was rolled back, or a tagging job stored new
        suggestions/regions: re-resolve the active versions and refresh the views; reload the
        classes too, since a round calibrates their thresholds."""
        self.reload_versions()
        self.reload_classes()

    def notify_images_changed(self) -> None:
        self.images_changed.emit()

    # -- look-ups --------------------------------------------------------------------------------
    def class_by_name(self, name: str) -> ClassInfo | None:
        wanted = name.strip().lower()
        for info in self.classes.values():
            if info.name.lower() == wanted:
                return info
        return None

    def class_name(self, class_id: int) -> str:
        info = self.classes.get(class_id)
        return info.name if info else f"class {class_id}"

    def class_color(self, class_id: int) -> QColor:
        info = self.classes.get(class_id)
        return info.qcolor if info else QColor("#888888")
