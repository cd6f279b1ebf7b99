"""One feature's background job, wired once: `JobSlot`.

The training panel, the review panel and the batch tagger each run at most one long job at a time
(on a lane of `app.workers.Workers`) and need the same plumbing: start it, follow its progress,
hear how it ended, cancel it, know whether one is running, and never act on a result that no
longer applies. A `JobSlot` owns that; the feature only says what to run and what to show.

    slot = JobSlot(state.workers, parent=self)           # gpu=True: the one-at-a-time lane
    slot.progress.connect(bar.set)                       # (done, total)
    slot.finished.connect(self.show_result)              # the job function's return value
    slot.failed.connect(self.show_failure)               # the exception (show it: dialogs)
    slot.cancelled.connect(self.show_cancelled)
    slot.busy_changed.connect(self.enable_buttons)       # True when a job starts, False after
    slot.start("Calibrating", calibrate_fn, mode, on_done=self.calibrated)
    slot.cancel()

Stale results are dropped: a job that finishes after the project was switched (or closed and
reopened) ends as `cancelled`; its result is never handed to `on_done` / `finished`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.workers import Job, Workers
from engine.errors import UserError


class JobSlot(QObject):
    """At most one running job for one feature, with its signals relayed on the GUI thread."""

    started = Signal(object)           # the app.workers.Job just started
    progress = Signal(int, int)        # done, total
    finished = Signal(object)          # the job function's return value (never a stale one)
    failed = Signal(object)            # the exception (UserError: show its message)
    cancelled = Signal()               # cancel() was asked, or the project changed meanwhile
    busy_changed = Signal(bool)        # a job started (True) / ended, however it ended (False)

    def __init__(self, workers: Workers, gpu: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.gpu = gpu
        self._job: Job | None = None

    @property
    def job(self) -> Job | None:
        """The running job, or None."""
        return self._job

    @property
    def busy(self) -> bool:
        return self._job is not None

    def start(self, title: str, fn: Callable[..., Any], *args: Any,
              on_done: Callable[[Any], None] | None = None, **kwargs: Any) -> Job:
        """Run `fn(store, *args, progress=..., should_stop=..., **kwargs)` on this slot's lane.
        `on_done(result)` runs before `finished` is emitted, only when the job finished and its
        project is still the open one. Raises UserError when a job is already running here or no
        project is open (nothing started then)."""
        if self._job is not None:
            raise UserError(f"{self._job.title} is still running; wait for it or cancel it.")
        generation = self.workers.generation
        job = self.workers.start_job(title, fn, *args, gpu=self.gpu,
                                     on_error=self.failed.emit, **kwargs)
        job.finished.connect(partial(self._finished, job, generation, on_done))
        job.cancelled.connect(self.cancelled.emit)
        job.progress.connect(self.progress.emit)
        job.ended.connect(partial(self._ended, job))
        self._job = job
        self.busy_changed.emit(True)
        self.started.emit(job)
        return job

    def cancel(self) -> None:
        """Ask the running job to stop at its next check (it ends as `cancelled`)."""
        if self._job is not None:
            self._job.cancel()

    def _finished(self, job: Job, generation: int, on_done, result: object) -> None:
        if generation != self.workers.generation:
            self.cancelled.emit()            # made for a project that is no longer open
            return
        if on_done is not None:
            on_done(result)
        self.finished.emit(result)

    def _ended(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self.busy_changed.emit(False)
