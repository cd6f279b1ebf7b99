"""The review panel: where the person's time goes, which thresholds apply, and which model is used.

Four tabs, one module each, all calling `engine.review` through the app's workers (nothing here
touches the database or a model on the GUI thread):

- Queue (`app.loop.queue_tab`): review orders, the first images of the chosen one with reasons;
- Thresholds (`app.loop.thresholds_tab`): calibration, thresholds set by hand, the auto-accept
  rule (undone in one step);
- Rounds (`app.loop.rounds_tab`): validation figures over the training rounds, model versions,
  rollback;
- Per class (`app.loop.per_class_tab`): the active student's precision-recall curve of a class and
  the class-by-class prediction / co-occurrence heat map on the validation split.

The panel owns what they share (`app.loop.review_common.ReviewJobs`: one review job at a time,
its progress bar and status line), relays the tabs' signals and keeps their settings. It names the
tabs' controls and actions (below), so the window and tests use one object, not three.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from app.loop.per_class_tab import PerClassTab
from app.loop.queue_tab import QueueTab
from app.loop.review_common import ReviewJobs
from app.loop.rounds_tab import RoundsTab
from app.loop.thresholds_tab import ThresholdsTab
from app.state import ProjectState


class ReviewPanel(QWidget):
    """Review queue, thresholds and auto-accept, rounds and model versions, per-class views."""

    queue_ready = Signal(list)        # image ids in the chosen review order
    image_activated = Signal(int)     # an entry of the queue was chosen
    thresholds_changed = Signal()
    auto_accepted = Signal(object)    # engine.review.auto_accept.AutoAcceptResult
    rolled_back = Signal(str)         # the model version made active

    def __init__(self, state: ProjectState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.jobs = ReviewJobs(self.workers, self)
        self.queue_tab = QueueTab(self.jobs)
        self.thresholds_tab = ThresholdsTab(state, self.jobs)
        self.rounds_tab = RoundsTab(state, self.jobs)
        self.per_class_tab = PerClassTab(state, self.jobs)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.queue_tab, "Queue")
        self.tabs.addTab(self.thresholds_tab, "Thresholds")
        self.tabs.addTab(self.rounds_tab, "Rounds")
        self.tabs.addTab(self.per_class_tab, "Per class")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.jobs.progress_bar)
        layout.addWidget(self.jobs.status)
        self.queue_tab.queue_ready.connect(self.queue_ready)
        self.queue_tab.image_activated.connect(self.image_activated)
        self.thresholds_tab.thresholds_changed.connect(self.thresholds_changed)
        self.thresholds_tab.auto_accepted.connect(self.auto_accepted)
        self.rounds_tab.rolled_back.connect(self.rolled_back)
        self._name_controls()
        state.versions_changed.connect(self.refresh)
        self.workers.project_opened.connect(lambda _store: self.refresh())
        if self.workers.store is not None:      # the docks come after the project has opened
            self.refresh()

    def _name_controls(self) -> None:
        queue, limits, rounds = self.queue_tab, self.thresholds_tab, self.rounds_tab
        self.status = self.jobs.status
        self.order_combo, self.queue_list, self.queue_note = (
            queue.order_combo, queue.queue_list, queue.queue_note)
        self.threshold_table, self.accept_target = limits.threshold_table, limits.accept_target
        self.version_table, self.rollback_button = rounds.version_table, rounds.rollback_button
        self.round_curves = rounds.round_curves

    # ------------------------------------------------------------------------------ state
    @property
    def job(self):
        """The running review job (queue, calibration, auto-accept, evaluation), or None."""
        return self.jobs.job

    @property
    def rounds(self) -> list:
        """The plotted rounds (engine.review.rounds.RoundInfo), oldest first."""
        return self.rounds_tab.rounds

    @property
    def tag_bars(self):
        return self.rounds_tab.tag_bars

    # ------------------------------------------------------------------------------ actions
    def set_order(self, key: str) -> None:
        self.queue_tab.set_order(key)

    def build_queue(self) -> None:
        self.queue_tab.build_queue()

    def calibrate(self) -> None:
        self.thresholds_tab.calibrate()

    def run_auto_accept(self) -> None:
        self.thresholds_tab.run_auto_accept()

    def rollback_selected(self) -> None:
        self.rounds_tab.rollback_selected()

    def refresh(self) -> None:
        """Reload rounds, versions and thresholds (after training, rollback, project switch);
        the per-class figures are measured again when their tab is in view."""
        self.rounds_tab.refresh_rounds()
        self.thresholds_tab.refresh_thresholds()
        self.per_class_tab.mark_stale()

    # ------------------------------------------------------------------------------ settings
    def save_settings(self, settings: QSettings) -> None:
        self.queue_tab.save_settings(settings)
        self.thresholds_tab.save_settings(settings)

    def restore_settings(self, settings: QSettings) -> None:
        self.queue_tab.restore_settings(settings)
        self.thresholds_tab.restore_settings(settings)
