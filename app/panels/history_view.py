"""Per-image tag history (from `store.tags.history(image_id)`): who or what set each tag and when,
with Revert for the selected entries (itself undoable)."""

from __future__ import annotations

from datetime import datetime, timezone

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.state import ProjectState
from app.undo import RevertChangesCommand

_STATE_TEXT = {"positive": "tag", "negative": "not", None: "—"}


def _history(store, image_id: int):
    return store.tags.history(image_id=image_id)


def _local(moment: datetime | None) -> str:
    """Stored times are UTC (SQLite returns them without a zone): show them in local time."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class HistoryView(QWidget):
    def __init__(self, state: ProjectState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.image_id: int | None = None
        self.tree = QTreeWidget()
        self.tree.setObjectName("historyTree")
        self.tree.setHeaderLabels(["When", "Class", "Change", "By"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.revert_button = QPushButton("Revert selected")
        self.revert_button.setToolTip("Put the selected changes back to what they were before "
                                      "(recorded as a new change; Ctrl+Z undoes it)")
        self.revert_button.clicked.connect(self.revert_selected)
        self.revert_button.setEnabled(False)
        self.tree.itemSelectionChanged.connect(
            lambda: self.revert_button.setEnabled(bool(self.tree.selectedItems())))
        self.empty = QLabel("<span style='color:gray'>No changes recorded</span>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.empty)
        buttons.addStretch(1)
        buttons.addWidget(self.revert_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tree)
        layout.addLayout(buttons)
        state.tags_changed.connect(self._tags_changed)
        state.classes_changed.connect(self.reload)

    def set_image(self, image_id: int | None) -> None:
        self.image_id = image_id
        self.reload()

    def reload(self) -> None:
        if self.image_id is None:
            self._fill([])
            return
        self.state.workers.db(_history, self.image_id, key="history", on_done=self._fill)

    def _tags_changed(self, image_ids) -> None:
        if self.image_id in image_ids:
            self.reload()

    def _fill(self, changes) -> None:
        self.tree.clear()
        for change in reversed(changes):          # newest first
            when = _local(change.time)
            item = QTreeWidgetItem([
                when, self.state.class_name(change.class_id),
                f"{_STATE_TEXT.get(change.old_state, '?')} → {_STATE_TEXT.get(change.new_state, '?')}",
                change.source])
            item.setData(0, Qt.ItemDataRole.UserRole, change.id)
            item.setToolTip(2, f"{change.old_state or 'no tag'} → {change.new_state or 'no tag'}")
            item.setForeground(1, self.state.class_color(change.class_id))
            self.tree.addTopLevelItem(item)
        self.empty.setVisible(not changes)

    def revert_selected(self) -> None:
        ids = [item.data(0, Qt.ItemDataRole.UserRole) for item in self.tree.selectedItems()]
        if ids and self.image_id is not None:
            self.state.undo_stack.push(RevertChangesCommand(
                self.state, ids, [self.image_id], text=f"Revert {len(ids)} history entries"))
