"""The training panel: train the teacher, the student or both from the GUI.

Choose the stage, backbones, epochs, image sizes and device, then Start. The round runs as a job on
the app's GPU lane (an `app.jobs.JobSlot`), through `engine.review.rounds.train_round`: unassigned
tagged images get a stratified split, the round warm-starts from the previous one when the class
list is the same, trains, and is evaluated on the validation split. The GUI thread only receives
signals:

- a progress bar with the ETA of the current stage, and the trainer's messages;
- live pyqtgraph curves of each loss and of the validation mAP, one point per epoch;
- afterwards the per-class AP of the new model as bars, and the run in the history table (those
  three tabs are `app.loop.training_charts.TrainingCharts`).

Cancel stops at the next batch; the trainer keeps the checkpoint and marks the run 'cancelled', and
Resume continues it. Selecting a run in the history shows its stored curves and per-class AP.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import dialogs
from app.elided import ElidedLabel
from app.jobs import JobSlot
from app.loop.process_run import ProcessRun
from app.loop.training_charts import TrainingCharts
from app.state import ProjectState
from engine.training.api import (
    BACKBONES,
    PROPOSAL_SOURCES,
    RECOMMENDED_PROPOSALS,
    STAGES,
    TrainConfig,
)

FORM_ROWS = 4
STAGE_TIPS = {
    "teacher": "The weakly-supervised detector: learns from image-level tags where each class is.",
    "student": "The fast tagger, distilled from the active teacher (or trained alone without one).",
    "all": "The teacher, then the student distilled from that new teacher.",
    "quick": "Seconds, not minutes: refit only the student's classifier on its cached view of "
             "every image, then refresh every suggestion. Needs a trained student.",
}
KD_CHOICES = (
    ("auto", "when the teacher is better", "Region features if the teacher validates above the "
     "active student, else tags alone (default: a weaker teacher pulls the student down)."),
    ("feature", "region features", "Always match the teacher's region features."),
    ("both", "features and predictions", "The paper's: features and undecided tags' soft scores."),
    ("prediction", "predictions only", "Learn the teacher's soft scores of the undecided tags."),
    ("none", "none (tags only)", "Train the student from the tags alone; needs no teacher."),
)


class _Bridge(QObject):
    """Carries the trainer's callbacks from the job thread to the GUI thread (queued signals)."""

    epoch = Signal(object)          # EpochReport
    stage = Signal(str)             # a new stage started reporting steps
    message = Signal(str)


def _train_job(store, config: TrainConfig, warm_start: bool, bridge: _Bridge, *, progress,
               should_stop):
    """The job body (runs on the GPU lane): one round through `engine.review.rounds.train_round`."""
    from engine.review.rounds import train_round
    from engine.training import TrainCallbacks

    current = {"stage": None}

    def on_step(stage: str, done: int, total: int) -> None:
        if stage != current["stage"]:
            current["stage"] = stage
            bridge.stage.emit(stage)
        progress(done, total)

    callbacks = TrainCallbacks(on_step=on_step, on_epoch=bridge.epoch.emit,
                               should_stop=should_stop, on_message=bridge.message.emit)
    return train_round(store, config, callbacks, warm_start=warm_start)


def _runs(store) -> list:
    return store.runs.list()


def _has_student(store) -> bool:
    from engine.store.versions import active_run

    return active_run(store, "student") is not None


def _choice_combo(choices: list[tuple[str, str, str]], tip: str) -> QComboBox:
    """A combo box of (value, label, tooltip) choices."""
    combo = QComboBox()
    for value, label, choice_tip in choices:
        combo.addItem(label, value)
        combo.setItemData(combo.count() - 1, choice_tip, Qt.ItemDataRole.ToolTipRole)
    combo.setToolTip(tip)
    return combo


class TrainingPanel(QWidget):
    """Training controls, progress, live curves, per-class AP and the run history."""

    training_started = Signal()
    training_finished = Signal(object)     # engine.review.rounds.RoundOutcome (also after a cancel)
    training_failed = Signal(object)       # the exception

    def __init__(self, state: ProjectState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.jobs = JobSlot(self.workers, parent=self)
        self.process_run = ProcessRun(self)     # a round of several processes (--nproc)
        for signal, slot in (("progress", self._on_progress), ("finished", self._finished),
                             ("failed", self._failed), ("cancelled", self._cancelled),
                             ("busy_changed", self._set_running)):
            getattr(self.jobs, signal).connect(slot)
            getattr(self.process_run, signal).connect(slot)
        self._bridge = _Bridge(self)
        for source in (self._bridge, self.process_run):
            source.epoch.connect(self._on_epoch)
            source.stage.connect(self._on_stage)
            source.message.connect(self._on_message)
        self._stage_name = ""
        self.charts = TrainingCharts()
        self.charts.run_selected.connect(self._run_selected)
        self._corrected: set[int] = set()
        self._last_config: TrainConfig | None = None
        self._build()
        self.state.workers.project_opened.connect(
            lambda _store: self.refresh_history(select_last=True))   # the last run, after a restart
        if self.workers.store is not None:      # the docks come after the project has opened
            self.refresh_history(select_last=True)
        self.state.tags_changed.connect(self._count_corrections)

    # ------------------------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.status = ElidedLabel("Idle.")
        controls = QWidget()
        left = QVBoxLayout(controls)
        left.setSpacing(4)
        left.addLayout(self._build_form())
        buttons = self._build_buttons()
        buttons.addWidget(self.progress, 1)
        left.addLayout(buttons)
        left.addWidget(self.status)
        left.addStretch(1)
        scroll = QScrollArea()                  # a short dock scrolls instead of squashing
        scroll.setWidget(controls)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(controls.sizeHint().width() + 20)
        scroll.setMaximumWidth(820)
        layout = QHBoxLayout(self)
        layout.addWidget(scroll, 3)
        layout.addWidget(self.charts, 2)
        self._stage_changed()

    def _build_form(self) -> QGridLayout:
        self.stage_combo = _choice_combo([(s, s, STAGE_TIPS[s]) for s in STAGES], "What to train.")
        self.stage_combo.setCurrentIndex(STAGES.index("all"))
        self.stage_combo.currentIndexChanged.connect(self._stage_changed)
        defaults = TrainConfig()
        self.teacher_backbone = self._backbone_combo("Teacher (detector) backbone.",
                                                     defaults.backbone)
        self.student_backbone = self._backbone_combo("Student (tagger) backbone.",
                                                     defaults.student_backbone)
        self.epochs = self._spin(1, 500, defaults.epochs, "Passes over the training images.")
        self.image_size = self._spin(64, 2048, defaults.image_size,
                                     "Teacher: longest image side in pixels.", step=32)
        self.student_size = self._spin(32, 1024, defaults.student_image_size,
                                       "Student: square input size in pixels.", step=32)
        self.kd = _choice_combo(list(KD_CHOICES), "What else the student learns from the teacher.")
        self.kd.setCurrentIndex(self.kd.findData(defaults.kd))
        self.proposals = QComboBox()
        self.proposals.addItems(list(PROPOSAL_SOURCES))
        self.proposals.setCurrentText(RECOMMENDED_PROPOSALS)
        self.proposals.setToolTip("Candidate regions for the teacher: selective search localises "
                                  "best; sliding windows are fastest to compute.")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("auto uses the GPU when there is one.")
        self.pretrained = QCheckBox("ImageNet weights")
        self.pretrained.setChecked(defaults.pretrained)
        self.pretrained.setToolTip("Start from ImageNet weights (built into efficientnet_lite0).")
        self.warm_start = QCheckBox("Warm start")
        self.warm_start.setChecked(True)
        self.warm_start.setToolTip("Start from the previous round's weights when the class list "
                                   "is unchanged (faster); from scratch when it changed.")
        self.auto_quick = self._spin(0, 10000, 0, "Run a quick round by itself after this many "
                                                  "images had their tags corrected (0: never).")
        self.auto_quick.setSpecialValueText("off")
        self.processes = self._spin(1, 64, 1, "Train with this many processes, one per GPU "
                                    "(gloo on the CPU), as a separate program "
                                    "(mlic train --nproc).")
        rows = (("Stage", self.stage_combo), ("Teacher backbone", self.teacher_backbone),
                ("Student backbone", self.student_backbone), ("Distillation", self.kd),
                ("Epochs", self.epochs), ("Teacher image size", self.image_size),
                ("Student image size", self.student_size), ("Proposals", self.proposals),
                ("Device", self.device), ("", self.pretrained), ("", self.warm_start),
                ("Quick round after", self.auto_quick), ("Processes", self.processes))
        form = QGridLayout()             # three columns of four rows: the whole form fits a
        form.setHorizontalSpacing(6)     # short dock at the default window size
        form.setVerticalSpacing(3)
        for n, (label, widget) in enumerate(rows):
            row, column = n % FORM_ROWS, 2 * (n // FORM_ROWS)
            if label:
                form.addWidget(QLabel(label), row, column)
            form.addWidget(widget, row, column + 1)
            widget.setMinimumWidth(max(90, widget.sizeHint().width()))   # nothing clipped
            form.setColumnStretch(column + 1, 1)
        return form

    def _build_buttons(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train a new round with these settings.")
        self.start_button.clicked.connect(lambda: self.start())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last cancelled run of this stage from its "
                                      "checkpoint.")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch; the checkpoint is kept and "
                                      "the run can be resumed.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.quick_button = QPushButton("Quick round")
        self.quick_button.setToolTip(STAGE_TIPS["quick"] + " (Ctrl+R)")
        self.quick_button.setShortcut("Ctrl+R")
        self.quick_button.clicked.connect(self.start_quick)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.quick_button, self.resume_button,
                       self.cancel_button):
            buttons.addWidget(button)
        return buttons

    # -- what the charts hold, by the names the panel has always had (tests read them)
    @property
    def curve_data(self) -> dict[tuple[str, str], list[tuple[int, float]]]:
        return self.charts.curve_data

    @property
    def _curves(self) -> dict:
        return self.charts.curves

    @property
    def history(self):
        return self.charts.history

    @property
    def ap_bars(self):
        return self.charts.ap_bars

    def _backbone_combo(self, tip: str, default: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(BACKBONES))
        combo.setCurrentText(default)
        combo.setToolTip(tip)
        return combo

    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str, step: int = 1) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setValue(value)
        spin.setToolTip(tip)
        return spin

    def _stage_changed(self) -> None:
        stage = self.stage_combo.currentData()
        self.epochs.setEnabled(stage != "quick")
        self.teacher_backbone.setEnabled(stage in ("teacher", "all"))
        self.image_size.setEnabled(stage in ("teacher", "all"))
        self.student_backbone.setEnabled(stage in ("student", "all"))
        self.student_size.setEnabled(stage in ("student", "all"))
        self.kd.setEnabled(stage in ("student", "all"))
        self.proposals.setEnabled(stage in ("teacher", "all"))

    # ------------------------------------------------------------------------------ settings
    def config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig the form describes (`overrides` replace fields, e.g. in tests)."""
        values: dict[str, Any] = {
            "stage": self.stage_combo.currentData(),
            "backbone": self.teacher_backbone.currentText(),
            "student_backbone": self.student_backbone.currentText(),
            "epochs": self.epochs.value(),
            "image_size": self.image_size.value(),
            "student_image_size": self.student_size.value(),
            "device": self.device.currentText(),
            "proposals": self.proposals.currentText(),
            "pretrained": self.pretrained.isChecked(),
            "kd": self.kd.currentData(),
        }
        values.update(overrides)
        return TrainConfig(**values)

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("training/stage", self.stage_combo.currentData())
        for key, widget in self._setting_widgets().items():
            settings.setValue(f"training/{key}", widget.value() if isinstance(widget, QSpinBox)
                              else widget.currentText())
        settings.setValue("training/pretrained", self.pretrained.isChecked())
        settings.setValue("training/warm_start", self.warm_start.isChecked())
        settings.setValue("training/auto_quick", self.auto_quick.value())

    def restore_settings(self, settings: QSettings) -> None:
        stage = settings.value("training/stage")
        if stage in STAGES:
            self.stage_combo.setCurrentIndex(STAGES.index(stage))
        for key, widget in self._setting_widgets().items():
            value = settings.value(f"training/{key}")
            if value is None:
                continue
            if isinstance(widget, QSpinBox):
                try:
                    widget.setValue(int(value))
                except (TypeError, ValueError):
                    continue
            elif widget.findText(str(value)) >= 0:
                widget.setCurrentText(str(value))
        for key, box in (("pretrained", self.pretrained), ("warm_start", self.warm_start)):
            value = settings.value(f"training/{key}")
            if value is not None:
                box.setChecked(str(value).lower() in ("true", "1"))
        self._restore_auto_quick(settings)

    def _restore_auto_quick(self, settings: QSettings) -> None:
        try:
            self.auto_quick.setValue(int(settings.value("training/auto_quick") or 0))
        except (TypeError, ValueError):
            self.auto_quick.setValue(0)

    def _setting_widgets(self) -> dict[str, Any]:
        return {"backbone": self.teacher_backbone, "student_backbone": self.student_backbone,
                "epochs": self.epochs, "image_size": self.image_size,
                "student_image_size": self.student_size, "device": self.device, "kd": self.kd,
                "proposals": self.proposals, "processes": self.processes}

    # ---------------------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        return self.jobs.busy or self.process_run.busy

    def start(self, config: TrainConfig | None = None, resume: bool = False) -> None:
        """Start a round (the form's settings unless `config` is given)."""
        if self.running:
            return
        try:
            config = config or self.config()
            if resume:
                from dataclasses import replace
                config = replace(config, resume=True)
            if self.processes.value() > 1 and config.stage != "quick":
                self.process_run.start(self.workers.store, config, self.processes.value(),
                                       self.warm_start.isChecked())
            else:
                self.jobs.start(f"Training ({config.stage})", _train_job, config,
                                self.warm_start.isChecked(), self._bridge)
            self._last_config = config
        except Exception as exc:  # noqa: BLE001 - a bad setting is shown, never raised
            dialogs.show_error(self, exc, "Training")
            return
        self._corrected.clear()
        self.charts.clear_curves()
        self.progress.setRange(0, 0)
        self.status.setText("Preparing…")
        self.training_started.emit()

    def start_quick(self) -> None:
        """A quick round: the student's head refit on the tags as they are now."""
        self.start(TrainConfig(stage="quick", device=self.device.currentText()))

    def _count_corrections(self, image_ids: Any) -> None:
        """Tag edits since the last round; at the chosen number a quick round starts by itself
        (once a student exists, and not while another round runs)."""
        self._corrected.update(image_ids or ())
        limit = self.auto_quick.value()
        if limit and len(self._corrected) >= limit and not self.running:
            self.workers.db(_has_student, key="training-auto-quick",
                            on_done=lambda ok: ok and not self.running and self.start_quick())

    def cancel(self) -> None:
        if self.running:
            (self.process_run if self.process_run.busy else self.jobs).cancel()
            self.status.setText("Cancelling after the current batch; the checkpoint is kept…")
            self.cancel_button.setEnabled(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.quick_button.setEnabled(not running)
        for widget in (self.stage_combo, self.teacher_backbone, self.student_backbone, self.epochs,
                       self.image_size, self.student_size, self.kd, self.device, self.proposals,
                       self.pretrained, self.warm_start, self.processes):
            widget.setEnabled(not running)
        if not running:
            self._stage_changed()

    # ----------------------------------------------------------------------- job signals
    def _on_stage(self, stage: str) -> None:
        self._stage_name = stage

    def _on_message(self, text: str) -> None:
        self.status.setText(text)

    def _on_progress(self, done: int, total: int) -> None:
        if total <= 0:
            return
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        job = self.jobs.job
        estimate = job.clock.text() if job is not None else "%p%"      # as in the status bar
        self.progress.setFormat(f"{self._stage_name}: {estimate}")

    def _on_epoch(self, report) -> None:
        validation = self.charts.add_epoch(report)
        self.status.setText(f"{report.model_version}: epoch {report.epoch}/{report.epochs}"
                            + validation)

    def _finished(self, outcome) -> None:
        figures = ", ".join(f"{version}: validation mAP {f.mAP:.3f}"
                            for version, f in outcome.figures.items() if not math.isnan(f.mAP))
        statuses = ", ".join(f"{run.model_version} {run.status}" for run in outcome.runs)
        self.status.setText(f"Done: {statuses}." + (f" {figures}." if figures else "")
                            + (f" {outcome.waiting}" if outcome.waiting else ""))
        self.status.setToolTip(self.status.text())
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.state.models_changed()
        self.refresh_history(select_last=True)
        self.training_finished.emit(outcome)

    def _cancelled(self) -> None:
        self.status.setText("Cancelled: the checkpoint is kept; Resume continues the run.")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.refresh_history()
        self.training_finished.emit(None)

    def _failed(self, exc: BaseException) -> None:
        from engine.training.student_options import NoUsableTeacherError

        if isinstance(exc, NoUsableTeacherError) and self._last_config is not None:
            self._offer_other_round(exc, self._last_config)
            return
        self.status.setText("Training failed.")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.refresh_history()
        self.training_failed.emit(exc)
        dialogs.show_error(self, exc, "Training")

    def _offer_other_round(self, exc: BaseException, config: TrainConfig) -> None:
        """A student round without a usable teacher: train it without KD, or the teacher first?"""
        from dataclasses import replace

        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.refresh_history()
        choice = dialogs.ask_without_teacher(self, str(exc))
        if choice in ("without", "teacher"):     # once the slot has let the failed job go
            again = (replace(config, kd="none", resume=False) if choice == "without"
                     else replace(config, stage="all", resume=False))
            QTimer.singleShot(0, self, lambda: self.start(again))
        else:
            self.status.setText("Not started: the student needs a teacher to distil from.")
            self.training_failed.emit(exc)

    # ------------------------------------------------------------------------ history
    def refresh_history(self, select_last: bool = False) -> None:
        self.workers.db(_runs, key="training-history",
                        on_done=lambda runs: self.charts.fill_history(runs, select_last))

    def _run_selected(self, run) -> None:
        if not self.running:               # the curves show the run in progress
            self.charts.show_run(run)
