"""The classes dialog: add, rename, merge, delete (with confirmation), colour, shortcut key and a
per-class threshold with a live count of the images it affects (images whose active-student
suggestion is at or above it, counted on the database thread while the spin box moves).

Renames, colours, keys and thresholds are undoable (`ClassUpdateCommand`), and Ctrl+Z /
Ctrl+Shift+Z work while the dialog has the focus; merge and delete remove data, ask first, and
clear the undo history (so no older edit can quietly bring a deleted class back)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
)

from app import dialogs
from app.state import ProjectState
from app.undo import ClassUpdateCommand
from app.viewer.panel import colour_icon
from engine.errors import UserError
from engine.store import queries as gq

COLUMNS = ["Colour", "Name", "Key", "Threshold", "Images ≥ threshold", "Tagged"]
RESERVED_KEYS = set("123456789jktr?[]") | {" "}
NO_UNDO = ("This cannot be undone, and it clears the undo history: earlier edits can no longer "
           "be undone either.")
COUNT_DELAY_MS = 120
COMMIT_DELAY_MS = 700


class ClassesDialog(QDialog):
    def __init__(self, state: ProjectState, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Classes")
        self.setObjectName("classesDialog")
        self.state = state
        self.resize(680, 420)
        self._ids: list[int] = []
        self._spins: dict[int, QDoubleSpinBox] = {}
        self._count_timers: dict[int, QTimer] = {}
        self._commit_timers: dict[int, QTimer] = {}
        self._tag_counts: dict[int, int] = {}
        self._filling = False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemChanged.connect(self._item_changed)
        self.table.setToolTip("Double-click a name or key to edit it")
        self.add_button = QPushButton("Add…")
        self.merge_button = QPushButton("Merge into…")
        self.delete_button = QPushButton("Delete…")
        self.add_button.clicked.connect(self.add_class)
        self.merge_button.clicked.connect(self.merge_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.merge_button.setToolTip("Move every tag of the selected class onto another class, "
                                     "then delete the selected class")
        self.delete_button.setToolTip("Delete the selected class with its tags, suggestions and "
                                      "regions")
        self.note = QLabel()
        self.note.setStyleSheet("color: gray;")
        self.note.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.close)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.merge_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        self._add_undo_actions()
        state.classes_changed.connect(self.sync)
        state.tags_changed.connect(lambda _ids: self._load_tag_counts())
        self.sync()
        self._load_tag_counts()

    def _add_undo_actions(self) -> None:
        """The window's undo stack, reachable while this dialog has the focus."""
        undo = self.state.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Undo))
        redo = self.state.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for action in (undo, redo):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)
        self.undo_action, self.redo_action = undo, redo

    # -- table -----------------------------------------------------------------------------------
    def sync(self) -> None:
        """Show the state's classes; rows are rebuilt only when the set of classes changed."""
        classes = list(self.state.classes.values())
        student = self.state.versions.student
        self.note.setText(f"Counts use the active student model ({student})." if student else
                          "No student model yet: the counts will fill in after training.")
        ids = [c.class_id for c in classes]
        self._filling = True
        try:
            if ids != self._ids:
                self._rebuild(classes)
            for row, info in enumerate(classes):
                self.table.item(row, 1).setText(info.name)
                self.table.item(row, 2).setText(info.shortcut or "")
                button = self.table.cellWidget(row, 0)
                button.setIcon(colour_icon(info.qcolor, 16))
                button.setToolTip(f"{info.color}: click to change")
                spin = self._spins[info.class_id]
                if not spin.hasFocus() and abs(spin.value() - info.threshold) > 1e-9:
                    spin.setValue(info.threshold)
                self._schedule_count(info.class_id)
        finally:
            self._filling = False
        self._show_tag_counts()

    def _rebuild(self, classes) -> None:
        self._ids = [c.class_id for c in classes]
        self._spins = {}
        self.table.setRowCount(len(classes))
        for row, info in enumerate(classes):
            button = QToolButton(autoRaise=True)
            button.clicked.connect(lambda _c=False, cid=info.class_id: self.pick_colour(cid))
            self.table.setCellWidget(row, 0, button)
            self.table.setItem(row, 1, QTableWidgetItem(info.name))
            key = QTableWidgetItem(info.shortcut or "")
            key.setToolTip("One letter: pressing it toggles this tag on the selected images")
            self.table.setItem(row, 2, key)
            spin = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=3)
            spin.setValue(info.threshold)
            spin.setToolTip("A suggestion at or above this confidence is shown as pending")
            spin.valueChanged.connect(lambda _v, cid=info.class_id: self._threshold_moved(cid))
            self.table.setCellWidget(row, 3, spin)
            self._spins[info.class_id] = spin
            for column in (4, 5):
                item = QTableWidgetItem("…")
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)

    def selected_class(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self._ids[rows[0].row()]

    def select_class(self, class_id: int) -> None:
        if class_id in self._ids:
            self.table.selectRow(self._ids.index(class_id))

    # -- thresholds ------------------------------------------------------------------------------
    def _threshold_moved(self, class_id: int) -> None:
        if self._filling:
            return
        self._schedule_count(class_id)
        timer = self._commit_timers.get(class_id)
        if timer is None:
            timer = QTimer(self, singleShot=True, interval=COMMIT_DELAY_MS)
            timer.timeout.connect(lambda cid=class_id: self._commit_threshold(cid))
            self._commit_timers[class_id] = timer
        timer.start()

    def _schedule_count(self, class_id: int) -> None:
        timer = self._count_timers.get(class_id)
        if timer is None:
            timer = QTimer(self, singleShot=True, interval=COUNT_DELAY_MS)
            timer.timeout.connect(lambda cid=class_id: self._count(cid))
            self._count_timers[class_id] = timer
        timer.start()

    def _count(self, class_id: int) -> None:
        spin = self._spins.get(class_id)
        if spin is None:
            return
        self.state.workers.db(gq.threshold_count, class_id, spin.value(),
                              self.state.versions.student, key=f"threshold-count-{class_id}",
                              on_done=lambda n, cid=class_id: self._show_count(cid, n))

    def _show_count(self, class_id: int, count: int) -> None:
        if class_id in self._ids:
            self.table.item(self._ids.index(class_id), 4).setText(f"{count:,}")

    def count_text(self, class_id: int) -> str:
        return self.table.item(self._ids.index(class_id), 4).text()

    def _commit_threshold(self, class_id: int) -> None:
        info = self.state.classes.get(class_id)
        spin = self._spins.get(class_id)
        if info is None or spin is None or abs(spin.value() - info.threshold) < 1e-9:
            return
        self.state.undo_stack.push(ClassUpdateCommand(
            self.state, class_id, {"threshold": info.threshold}, {"threshold": spin.value()},
            text=f"Threshold of {info.name} → {spin.value():.3f}"))

    def flush(self) -> None:
        """Commit thresholds still waiting for their delay (closing, tests)."""
        for class_id, timer in self._commit_timers.items():
            if timer.isActive():
                timer.stop()
                self._commit_threshold(class_id)

    # -- edits -----------------------------------------------------------------------------------
    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() not in (1, 2):
            return
        class_id = self._ids[item.row()]
        info = self.state.classes.get(class_id)
        if info is None:
            return
        if item.column() == 1:
            name = item.text().strip()
            if name and name != info.name and dialogs.refuse_class_name(self, name):
                self.sync()
            elif name and name != info.name:
                self.state.undo_stack.push(ClassUpdateCommand(
                    self.state, class_id, {"name": info.name}, {"name": name},
                    text=f"Rename {info.name} → {name}"))
            else:
                self.sync()
            return
        key = item.text().strip().lower()[:1] or None
        problem = self._key_problem(class_id, key)
        if problem:
            dialogs.show_error(self, UserError(problem))
            self.sync()
            return
        if key != (info.shortcut or None):
            self.state.undo_stack.push(ClassUpdateCommand(
                self.state, class_id, {"shortcut": info.shortcut}, {"shortcut": key},
                text=f"Shortcut of {info.name} → {key or 'none'}"))

    def _key_problem(self, class_id: int, key: str | None) -> str | None:
        if key is None:
            return None
        if key in RESERVED_KEYS:
            return f"The key {key!r} is taken by the review shortcuts (1-9, J, K, T, R, ?, [, ])."
        for other in self.state.classes.values():
            if other.class_id != class_id and (other.shortcut or "").lower() == key:
                return f"The key {key!r} already belongs to the class {other.name!r}."
        return None

    def pick_colour(self, class_id: int) -> None:
        info = self.state.classes.get(class_id)
        if info is None:
            return
        colour = QColorDialog.getColor(info.qcolor, self, f"Colour of {info.name}")
        if colour.isValid():
            self.set_colour(class_id, colour)

    def set_colour(self, class_id: int, colour: QColor) -> None:
        info = self.state.classes[class_id]
        self.state.undo_stack.push(ClassUpdateCommand(
            self.state, class_id, {"color": info.color}, {"color": colour.name()},
            text=f"Colour of {info.name}"))

    def add_class(self) -> None:
        name = dialogs.get_text(self, "Add class", "Name of the new class:")
        if name and not dialogs.refuse_class_name(self, name):
            self.state.workers.db(lambda store: store.classes.ensure([name]),
                                  on_done=lambda _r: self.state.reload_classes(),
                                  on_error=lambda exc: dialogs.show_error(self, exc))

    def merge_selected(self) -> None:
        source = self.selected_class()
        if source is None:
            return
        others = [c.name for c in self.state.classes.values() if c.class_id != source]
        name = dialogs.get_item(self, "Merge class",
                                f"Move every tag of {self.state.class_name(source)!r} onto:",
                                others)
        target = self.state.class_by_name(name) if name else None
        if target is None:
            return
        if not dialogs.ask(self, "Merge class", (
                f"Merge {self.state.class_name(source)!r} into {target.name!r}? Its tags move to "
                f"{target.name!r} and the class is deleted with its suggestions and regions. "
                f"{NO_UNDO}"), danger=True):
            return
        self.state.workers.db(lambda store: store.classes.merge(source, target.class_id),
                              on_done=lambda _r: self._classes_removed(),
                              on_error=lambda exc: dialogs.show_error(self, exc))

    def delete_selected(self) -> None:
        class_id = self.selected_class()
        if class_id is None:
            return
        name = self.state.class_name(class_id)
        tagged = self._tag_counts.get(class_id, 0)
        if not dialogs.ask(self, "Delete class", (
                f"Delete the class {name!r}? Its {tagged:,} tag(s), its suggestions and regions "
                f"are removed. {NO_UNDO}"), danger=True):
            return
        self.state.workers.db(lambda store: store.classes.delete(class_id),
                              on_done=lambda _r: self._classes_removed(),
                              on_error=lambda exc: dialogs.show_error(self, exc))

    def _classes_removed(self) -> None:
        self.state.undo_stack.clear()
        self.state.reload_classes()
        self.state.tags_changed.emit(set())
        self.state.notify_images_changed()

    # -- tag counts ------------------------------------------------------------------------------
    def _load_tag_counts(self) -> None:
        self.state.workers.db(gq.class_tag_counts, key="class-tag-counts",
                              on_done=self._set_tag_counts)

    def _set_tag_counts(self, counts: dict[int, int]) -> None:
        self._tag_counts = counts
        self._show_tag_counts()

    def _show_tag_counts(self) -> None:
        for row, class_id in enumerate(self._ids):
            item = self.table.item(row, 5)
            if item is not None:
                item.setText(f"{self._tag_counts.get(class_id, 0):,}")

    def hideEvent(self, event) -> None:
        self.flush()
        super().hideEvent(event)
