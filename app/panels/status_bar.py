"""Status bar: project counts (images, tagged, reviewed, pending suggestions) and the running job
with its progress and a Cancel button. Jobs come from `Workers.start_job`, whoever started them
(intake, demo data, training, batch tagging)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton

from app.state import ProjectState
from app.workers import Job, Workers
from engine.store import queries as gq


class StatusBar(QStatusBar):
    def __init__(self, state: ProjectState, workers: Workers, parent=None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.counts_label = QLabel()
        self.counts_label.setObjectName("counts")
        self.job_label = QLabel()
        self.job_label.setObjectName("jobLabel")
        self.progress = QProgressBar(maximumWidth=180, textVisible=True)
        self.progress.setObjectName("jobProgress")
        self.cancel_button = QToolButton(text="Cancel", toolTip="Stop the running job")
        self.cancel_button.clicked.connect(self.cancel_current)
        self.addPermanentWidget(self.job_label)
        self.addPermanentWidget(self.progress)
        self.addPermanentWidget(self.cancel_button)
        self.addPermanentWidget(self.counts_label)
        self._job: Job | None = None
        workers.jobs_changed.connect(self._jobs_changed)
        state.counts_changed.connect(self.show_counts)
        self._jobs_changed()

    def show_counts(self, counts: gq.ProjectCounts) -> None:
        text = (f"{counts.images:,} images · {counts.tagged:,} tagged · {counts.reviewed:,} "
                f"reviewed · {counts.pending:,} pending suggestions")
        if counts.unreadable:
            text += f" · {counts.unreadable:,} unreadable"
        self.counts_label.setText(text)
        self.counts_label.setToolTip("Tagged: at least one positive tag. Reviewed: a person "
                                     "decided at least one tag. Pending: suggestions of the "
                                     "active student above their class threshold, undecided.")

    def cancel_current(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.job_label.setText(f"{self._job.title}: cancelling…")

    def _jobs_changed(self) -> None:
        jobs = self.workers.running_jobs()
        job = jobs[0] if jobs else None
        if job is not self._job:
            if self._job is not None:
                try:
                    self._job.progress.disconnect(self._progress)
                except (RuntimeError, TypeError):
                    pass  # already disconnected when the job ended
            self._job = job
            if job is not None:
                job.progress.connect(self._progress)
        visible = job is not None
        for widget in (self.job_label, self.progress, self.cancel_button):
            widget.setVisible(visible)
        if job is not None:
            more = f" (+{len(jobs) - 1} queued)" if len(jobs) > 1 else ""
            self.job_label.setText(job.title + more)
            self._progress(job.done, job.total)

    def _progress(self, done: int, total: int) -> None:
        if total <= 0 or self._job is None:
            self.progress.setRange(0, 0)           # busy indicator
            return
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(self._job.clock.text())
