"""`ExchangeDialog`: the frame every File-menu import/export dialog shares.

Options on top (a form the subclass fills), a preview table and a summary line, a progress bar,
and the buttons Preview, the action (Import / Write / Export), Cancel (the running job) and Close.
Jobs run on a `JobSlot` (not the GPU lane), so the window stays responsive and a job can be
cancelled; the dialog never touches the store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import dialogs
from app.jobs import JobSlot


class ExchangeDialog(QDialog):
    """Options, preview, progress and cancel around one import or export."""

    action_text = "Run"

    def __init__(self, state, columns: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = JobSlot(state.workers, gpu=False, parent=self)
        self.last_result: Any = None
        self.form = QFormLayout()
        self.table = QTableWidget(0, len(columns), self)
        self.table.setHorizontalHeaderLabels(columns)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.summary = QLabel("Preview to see what will change.", self)
        self.summary.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.preview_button = QPushButton("&Preview", self)
        self.run_button = QPushButton(self.action_text, self)
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        for button in (self.preview_button, self.run_button, self.cancel_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.bar)
        layout.addWidget(buttons)
        self.jobs.progress.connect(self._progress)
        self.jobs.busy_changed.connect(self._busy)
        self.jobs.failed.connect(lambda exc: dialogs.show_error(self, exc, self.windowTitle()))
        self.jobs.cancelled.connect(lambda: self.summary.setText("Cancelled; nothing changed."))
        self.resize(760, 520)

    # -- what subclasses provide ---------------------------------------------------------------
    def preview(self) -> None:
        """Start the dry run (subclasses)."""

    def run(self) -> None:
        """Start the real import / export (subclasses)."""

    # -- shared plumbing -----------------------------------------------------------------------
    def start(self, title: str, fn: Callable[..., Any], *args: Any,
              on_done: Callable[[Any], None]) -> None:
        try:
            self.jobs.start(title, fn, *args, on_done=on_done)
        except Exception as exc:  # noqa: BLE001 - a UserError: no project, a job running
            dialogs.show_error(self, exc, self.windowTitle())

    def fill(self, rows: list[list[str]]) -> None:
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def _progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)

    def _busy(self, busy: bool) -> None:
        self.preview_button.setEnabled(not busy)
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if not busy:
            self.bar.setValue(self.bar.maximum())
