"""What the review panel's tabs share: one review job at a time (queue, calibration, auto-accept,
evaluation) with its progress bar and status line (`ReviewJobs`), and how a validation figure is
written (`figure_text`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QProgressBar, QWidget

from app import dialogs
from app.elided import ElidedLabel
from app.jobs import JobSlot
from app.workers import Workers


class ReviewJobs(JobSlot):
    """The review panel's job slot plus the two widgets that report on it; the panel lays them
    out under its tabs, each tab disables its job button on `busy_changed`."""

    def __init__(self, workers: Workers, panel: QWidget) -> None:
        super().__init__(workers, gpu=True, parent=panel)
        self.panel = panel
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.status = ElidedLabel("")        # one line; the whole text in its tooltip
        self.progress.connect(self._show_progress)
        self.failed.connect(self.fail)
        self.busy_changed.connect(self._busy_changed)

    def run(self, title: str, fn: Callable[..., Any], *args: Any,
            on_done: Callable[[Any], None]) -> None:
        """Start `fn` as the review job (refused with a note while another one runs)."""
        if self.busy:
            self.status.setText("Wait for the running review job to finish.")
            return
        try:
            self.start(title, fn, *args, on_done=on_done)
        except Exception as exc:  # noqa: BLE001 - e.g. no project open: shown, never raised
            dialogs.show_error(self.panel, exc, "Review")
            return
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.status.setText(f"{title}…")

    def say(self, text: str) -> None:
        self.status.setText(text)

    def fail(self, exc: BaseException) -> None:
        """A review job or request failed: clear the status line, show why."""
        self.status.setText("")
        dialogs.show_error(self.panel, exc, "Review")

    def _show_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)

    def _busy_changed(self, busy: bool) -> None:
        if not busy:
            self.progress_bar.setVisible(False)
            if self.status.text().endswith("…"):
                self.status.setText("")


def figure_text(value: float | None) -> str:
    """A precision, recall, F1 or mAP as shown in the tables ('' when not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}"
