"""The review panel: where the person's time goes, which thresholds apply, and which model is used.

Three tabs, all calling `engine.review` / `engine.review.rounds` through the app's workers (nothing here
touches the database or a model on the GUI thread):

- Queue: the review order (each with its explanation as tooltip); Build fills a list of the first
  images with the reason each is there. Activating one emits `image_activated(id)`; the whole
  order is emitted as `queue_ready(ids)` for the gallery.
- Thresholds: calibrate every class's threshold on the validation split (best F1, or the lowest
  threshold reaching a precision); edit a threshold by hand (kept by later calibrations until
  "Let calibration decide"). Auto-accept: suggestions above a per-class precision target become
  tags with source "model rule" in one batch, pushed on the undo stack, so Ctrl+Z reverts the
  whole rule in one step.
- Rounds: mAP / CF1 / OF1 on the validation split over the training rounds beside the number of
  tags a person had set, and the model versions with "Roll back to this version".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import dialogs
from app.jobs import JobSlot
from app.state import ProjectState
from app.style import style_plot
from engine.review import auto_accept, thresholds
from engine.review.queue import QUEUE_ORDERS, review_queue

QUEUE_SHOWN = 500          # entries listed in the panel (the gallery gets the whole order)


# ------------------------------------------------------------------ job / database functions


def _build_queue(store, order: str, include_reviewed: bool, *, progress, should_stop):
    queue = review_queue(store, order, include_reviewed=include_reviewed,
                          ensure_scores=True, progress=progress, should_stop=should_stop)
    shown = queue.entries[:QUEUE_SHOWN]
    paths = store.images.paths([entry.image_id for entry in shown])
    names = {i: Path(p).name for i, p in paths.items()}
    return queue, names


def _calibrate(store, mode: str, target: float, *, progress, should_stop):
    return thresholds.calibrate_thresholds(store, mode=mode, precision_target=target,
                                       progress=progress, should_stop=should_stop)


def _auto_accept(store, target: float, *, progress, should_stop):
    return auto_accept.auto_accept(store, precision_target=target, progress=progress,
                              should_stop=should_stop)


def _thresholds(store) -> list[tuple[int, str, float, bool]]:
    manual = thresholds.manual_threshold_ids(store)
    return [(c.id, c.name, float(c.threshold), c.id in manual) for c in store.classes.list()]


def _set_manual(store, class_id: int, value: float) -> None:
    thresholds.set_manual_threshold(store, class_id, value)


def _clear_manual(store, class_id: int) -> None:
    thresholds.clear_manual_threshold(store, class_id)


def _rounds(store):
    from engine.review.rounds import round_history

    history = round_history(store)
    plotted = history[0].stage if history else "student"
    others = [r for stage in ("teacher", "student") if stage != plotted
              for r in round_history(store, stage)]
    return history, sorted(history + others, key=lambda r: r.run_id)


def _rollback(store, version: str) -> None:
    from engine.review.rounds import rollback

    rollback(store, version)


def _evaluate_missing(store, *, progress, should_stop):
    from engine.review.rounds import evaluate_round, round_history

    todo = [r for stage in ("teacher", "student") for r in round_history(store, stage)
            if math.isnan(r.mAP) or math.isnan(r.CF1)]
    for n, info in enumerate(todo):
        if should_stop():
            break
        evaluate_round(store, info.model_version, should_stop=should_stop)
        progress(n + 1, len(todo))
    return len(todo)


# --------------------------------------------------------------------------- undo command


def _undo_rule(store, command: AutoAcceptCommand) -> None:
    command.undo_batch = auto_accept.undo_auto_accept(store, command.batch, since_id=command.since_id)


def _redo_rule(store, command: AutoAcceptCommand) -> None:
    if command.undo_batch is not None:
        again = auto_accept.revert_rule(store, command.undo_batch, source="model rule",
                                   since_id=command.since_id)
        command.batch = again or command.batch


class AutoAcceptCommand(QUndoCommand):
    """An applied auto-accept rule on the undo stack: undo reverts all its tags in one step (those
    nobody changed since), redo applies them again (source 'model rule')."""

    def __init__(self, state: ProjectState, result) -> None:
        super().__init__(f"Auto-accept {result.count} suggestions")
        self.state = state
        self.batch: str = result.batch
        self.since_id: int = result.since_id
        self.undo_batch: str | None = None
        self._applied = True            # the rule ran before the command was pushed

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self.state.workers.db(_redo_rule, self, on_done=self._changed)

    def undo(self) -> None:
        self.state.workers.db(_undo_rule, self, on_done=self._changed)

    def _changed(self, _result) -> None:
        self.state.tags_changed.emit(set())
        self.state.refresh_counts()


# ------------------------------------------------------------------------------- the panel


class ReviewPanel(QWidget):
    """Review queue, thresholds and auto-accept, rounds and model versions."""

    queue_ready = Signal(list)        # image ids in the chosen review order
    image_activated = Signal(int)     # an entry of the queue was chosen
    thresholds_changed = Signal()
    auto_accepted = Signal(object)    # engine.review.auto_accept.AutoAcceptResult
    rolled_back = Signal(str)         # the model version made active

    def __init__(self, state: ProjectState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.jobs = JobSlot(self.workers, parent=self)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.failed.connect(self._failed)
        self.jobs.busy_changed.connect(self._busy_changed)
        self.queue = None
        self.calibration = None
        self.rounds: list = []
        self.versions: list = []
        self._filling = False
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_queue_tab(), "Queue")
        self.tabs.addTab(self._build_threshold_tab(), "Thresholds")
        self.tabs.addTab(self._build_rounds_tab(), "Rounds")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        state.versions_changed.connect(self.refresh)
        state.classes_changed.connect(self.refresh_thresholds)
        self.workers.project_opened.connect(lambda _store: self.refresh())

    # ------------------------------------------------------------------------------ queue tab
    def _build_queue_tab(self) -> QWidget:
        self.order_combo = QComboBox()
        for order in QUEUE_ORDERS:
            self.order_combo.addItem(order.label, order.key)
            self.order_combo.setItemData(self.order_combo.count() - 1, order.tooltip,
                                         Qt.ItemDataRole.ToolTipRole)
        self.order_combo.currentIndexChanged.connect(self._order_changed)
        self.include_reviewed = QCheckBox("Include reviewed images")
        self.include_reviewed.setToolTip("Also list images a person has already reviewed.")
        self.build_button = QPushButton("Build queue")
        self.build_button.setToolTip("Order the images; 'Likely label mistakes' first "
                                     "cross-fits a small model (a few seconds to minutes).")
        self.build_button.clicked.connect(self.build_queue)
        self.queue_list = QListWidget()
        self.queue_list.setUniformItemSizes(True)
        self.queue_list.itemActivated.connect(self._entry_activated)
        self.queue_list.currentItemChanged.connect(lambda item, _old: self._entry_activated(item))
        self.queue_note = QLabel("")
        self.queue_note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.order_combo, 1)
        row.addWidget(self.build_button)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addLayout(row)
        layout.addWidget(self.include_reviewed)
        layout.addWidget(self.queue_list, 1)
        layout.addWidget(self.queue_note)
        self._order_changed()
        return tab

    def _order_changed(self) -> None:
        self.order_combo.setToolTip(self.order_combo.currentData(Qt.ItemDataRole.ToolTipRole))

    def set_order(self, key: str) -> None:
        index = self.order_combo.findData(key)
        if index >= 0:
            self.order_combo.setCurrentIndex(index)

    def build_queue(self) -> None:
        order = self.order_combo.currentData()
        self._start_job(f"Review queue ({order})", _build_queue, order,
                        self.include_reviewed.isChecked(), on_done=self._queue_built)

    def _queue_built(self, outcome) -> None:
        queue, names = outcome
        self.queue = queue
        self.queue_list.clear()
        for entry in queue.entries[:QUEUE_SHOWN]:
            text = names.get(entry.image_id, f"image {entry.image_id}")
            item = QListWidgetItem(f"{text} — {entry.reason}" if entry.reason else text)
            item.setData(Qt.ItemDataRole.UserRole, entry.image_id)
            item.setToolTip(entry.reason or text)
            self.queue_list.addItem(item)
        more = len(queue.entries) - QUEUE_SHOWN
        note = f"{len(queue.entries)} images in this order"
        note += f" (first {QUEUE_SHOWN} listed)" if more > 0 else ""
        self.queue_note.setText(" ".join(t.rstrip(".") + "." for t in (note, queue.note) if t))
        self.queue_ready.emit(queue.image_ids)

    def _entry_activated(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            self.image_activated.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    # ------------------------------------------------------------------------- threshold tab
    def _build_threshold_tab(self) -> QWidget:
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Best F1", "f1")
        self.mode_combo.addItem("Precision at least", "precision")
        self.mode_combo.setItemData(0, "Each class's threshold where F1 on the validation split "
                                       "is highest.", Qt.ItemDataRole.ToolTipRole)
        self.mode_combo.setItemData(1, "Each class's lowest threshold whose precision on the "
                                       "validation split reaches the target.",
                                    Qt.ItemDataRole.ToolTipRole)
        self.precision = self._fraction(0.9, "Precision target for calibration.")
        self.mode_combo.currentIndexChanged.connect(
            lambda: self.precision.setEnabled(self.mode_combo.currentData() == "precision"))
        self.precision.setEnabled(False)
        self.calibrate_button = QPushButton("Calibrate thresholds")
        self.calibrate_button.setToolTip("Choose every class's threshold on the validation split "
                                         "with the active student; hand-set ones are kept.")
        self.calibrate_button.clicked.connect(self.calibrate)
        self.threshold_table = QTableWidget(0, 7)
        self.threshold_table.setHorizontalHeaderLabels(
            ["Class", "Threshold", "Precision", "Recall", "F1", "Val positives", "Set by"])
        self.threshold_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.threshold_table.verticalHeader().setVisible(False)
        self.threshold_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.threshold_table.setToolTip("Double-click a threshold to set it by hand.")
        self.threshold_table.itemChanged.connect(self._threshold_edited)
        self.auto_button = QPushButton("Let calibration decide")
        self.auto_button.setToolTip("Forget the hand-set threshold of the selected classes.")
        self.auto_button.clicked.connect(self._clear_manual_selected)

        self.accept_target = self._fraction(0.95, "Suggestions are accepted where the class's "
                                                  "precision on the validation split reaches "
                                                  "this.")
        self.accept_button = QPushButton("Auto-accept suggestions")
        self.accept_button.setToolTip("Turn suggestions above each class's threshold for this "
                                      "precision into tags (source 'model rule'), on training "
                                      "images without a tag for that class. Undo (Ctrl+Z) "
                                      "reverts the whole rule in one step.")
        self.accept_button.clicked.connect(self.run_auto_accept)
        self.accept_label = QLabel("")
        self.accept_label.setWordWrap(True)

        calibration = QHBoxLayout()
        calibration.addWidget(self.mode_combo)
        calibration.addWidget(self.precision)
        calibration.addWidget(self.calibrate_button)
        rule = QGroupBox("Auto-accept rule")
        rule_form = QFormLayout(rule)
        rule_form.addRow("Precision target", self.accept_target)
        rule_form.addRow(self.accept_button)
        rule_form.addRow(self.accept_label)
        thresholds = QVBoxLayout()
        thresholds.addLayout(calibration)
        thresholds.addWidget(self.threshold_table, 1)
        thresholds.addWidget(self.auto_button)
        side = QVBoxLayout()
        side.addWidget(rule)
        side.addStretch(1)
        tab = QWidget()
        layout = QHBoxLayout(tab)
        layout.addLayout(thresholds, 3)
        layout.addLayout(side, 1)
        return tab

    @staticmethod
    def _fraction(value: float, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.5, 1.0)
        spin.setSingleStep(0.01)
        spin.setDecimals(2)
        spin.setValue(value)
        spin.setToolTip(tip)
        return spin

    def calibrate(self) -> None:
        self._start_job("Calibrating thresholds", _calibrate, self.mode_combo.currentData(),
                        self.precision.value(), on_done=self._calibrated)

    def _calibrated(self, report) -> None:
        self.calibration = report
        self.status.setText(report.summary())
        self.state.reload_classes()
        self.refresh_thresholds()
        self.thresholds_changed.emit()

    def refresh_thresholds(self) -> None:
        self.workers.db(_thresholds, key="review-thresholds", on_done=self._fill_thresholds)

    def _fill_thresholds(self, rows: list[tuple[int, str, float, bool]]) -> None:
        figures = {}
        if self.calibration is not None:
            figures = {c.class_id: c.choice for c in self.calibration.classes}
        self._filling = True
        self.threshold_table.setRowCount(len(rows))
        for row, (class_id, name, threshold, manual) in enumerate(rows):
            choice = figures.get(class_id)
            cells = [name, f"{threshold:.3f}"]
            if choice is not None:
                cells += [_pct(choice.precision), _pct(choice.recall), _pct(choice.f1),
                          str(choice.positives)]
            else:
                cells += ["", "", "", ""]
            cells.append("hand" if manual else "calibration")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column != 1:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setData(Qt.ItemDataRole.UserRole, class_id)
                self.threshold_table.setItem(row, column, item)
        self._filling = False

    def _threshold_edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        class_id = int(item.data(Qt.ItemDataRole.UserRole))
        try:
            value = float(item.text().replace(",", "."))
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            self.status.setText("A threshold is a number between 0 and 1.")
            self.refresh_thresholds()
            return
        self.set_threshold(class_id, value)

    def set_threshold(self, class_id: int, value: float) -> None:
        """Set a class's threshold by hand (calibration keeps it)."""
        self.workers.db(_set_manual, class_id, value, on_done=lambda _r: self._threshold_saved(),
                        on_error=self._failed)

    def _threshold_saved(self) -> None:
        self.state.reload_classes()
        self.refresh_thresholds()
        self.thresholds_changed.emit()

    def _clear_manual_selected(self) -> None:
        rows = {index.row() for index in self.threshold_table.selectedIndexes()}
        for row in rows:
            item = self.threshold_table.item(row, 0)
            if item is not None:
                self.workers.db(_clear_manual, int(item.data(Qt.ItemDataRole.UserRole)),
                                on_done=lambda _r: self.refresh_thresholds())

    def run_auto_accept(self) -> None:
        self._start_job("Auto-accepting suggestions", _auto_accept, self.accept_target.value(),
                        on_done=self._auto_accepted)

    def _auto_accepted(self, result) -> None:
        self.accept_label.setText(result.summary() + (" Undo (Ctrl+Z) reverts it in one step."
                                                      if result.batch else ""))
        if result.batch is not None:
            self.state.undo_stack.push(AutoAcceptCommand(self.state, result))
            self.state.tags_changed.emit(set())
            self.state.refresh_counts()
        self.auto_accepted.emit(result)

    # ---------------------------------------------------------------------------- rounds tab
    def _build_rounds_tab(self) -> QWidget:
        self.rounds_plot = pg.PlotWidget(title="Validation figures over rounds")
        item = self.rounds_plot.getPlotItem()
        item.setLabel("bottom", "round")
        item.setLabel("left", "mAP / CF1 / OF1")
        item.setYRange(0, 1)
        item.addLegend(offset=(5, 5))
        item.showAxis("right")
        item.getAxis("right").setLabel("tags set by a person")
        self._tags_view = pg.ViewBox()
        item.scene().addItem(self._tags_view)
        item.getAxis("right").linkToView(self._tags_view)
        self._tags_view.setXLink(item)
        item.vb.sigResized.connect(
            lambda: self._tags_view.setGeometry(item.vb.sceneBoundingRect()))
        self.round_curves = {
            key: self.rounds_plot.plot(name=key, pen=pg.mkPen(colour, width=2), symbol="o",
                                       symbolBrush=colour, symbolSize=6)
            for key, colour in (("mAP", "#4e79a7"), ("CF1", "#f28e2b"), ("OF1", "#59a14f"))}
        self.tag_bars: pg.BarGraphItem | None = None
        style_plot(self.rounds_plot)

        self.version_table = QTableWidget(0, 8)
        self.version_table.setHorizontalHeaderLabels(
            ["Version", "Stage", "Val mAP", "CF1", "OF1", "Person tags", "Started from", "Active"])
        self.version_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.version_table.verticalHeader().setVisible(False)
        self.version_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.version_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.version_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.version_table.itemSelectionChanged.connect(self._version_selected)
        self.rollback_button = QPushButton("Roll back to this version")
        self.rollback_button.setToolTip("Use the selected model version for suggestions and "
                                        "regions again (its stage's active version).")
        self.rollback_button.setEnabled(False)
        self.rollback_button.clicked.connect(self.rollback_selected)
        self.evaluate_button = QPushButton("Evaluate unmeasured rounds")
        self.evaluate_button.setToolTip("Measure rounds that have no validation figures yet "
                                        "(e.g. trained from the command line).")
        self.evaluate_button.clicked.connect(self.evaluate_missing)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rollback_button)
        buttons.addWidget(self.evaluate_button)
        versions = QVBoxLayout()
        versions.addWidget(self.version_table, 1)
        versions.addLayout(buttons)
        tab = QWidget()
        layout = QHBoxLayout(tab)
        layout.addWidget(self.rounds_plot, 3)
        layout.addLayout(versions, 2)
        return tab

    def refresh(self) -> None:
        """Reload rounds, versions and thresholds (after training, rollback, project switch)."""
        self.workers.db(_rounds, key="review-rounds", on_done=self._fill_rounds)
        self.refresh_thresholds()

    def _fill_rounds(self, outcome) -> None:
        self.rounds, self.versions = outcome
        x = np.array([r.index for r in self.rounds], dtype=float)
        for key, curve in self.round_curves.items():
            y = np.array([getattr(r, key) for r in self.rounds], dtype=float)
            keep = ~np.isnan(y)
            curve.setData(x[keep], y[keep])
        if self.tag_bars is not None:
            self._tags_view.removeItem(self.tag_bars)
            self.tag_bars = None
        if self.rounds:
            tags = np.array([r.person_tags for r in self.rounds], dtype=float)
            self.tag_bars = pg.BarGraphItem(x=x, height=tags, width=0.35,
                                            brush=pg.mkBrush(150, 150, 150, 90))
            self._tags_view.addItem(self.tag_bars)
            self._tags_view.setYRange(0, max(1.0, float(tags.max()) * 1.1))
            self.rounds_plot.getPlotItem().setXRange(0.5, len(self.rounds) + 0.5)
            self.rounds_plot.getPlotItem().getAxis("bottom").setTicks(
                [[(r.index, str(r.index)) for r in self.rounds]])
        self.version_table.setRowCount(len(self.versions))
        for row, info in enumerate(self.versions):
            cells = [info.model_version, info.stage, _pct(info.mAP), _pct(info.CF1),
                     _pct(info.OF1), str(info.person_tags), info.init_from or "scratch",
                     "✓" if info.active else ""]
            for column, text in enumerate(cells):
                self.version_table.setItem(row, column, QTableWidgetItem(text))
        self._version_selected()

    def _selected_version(self):
        rows = {index.row() for index in self.version_table.selectedIndexes()}
        return self.versions[rows.pop()] if len(rows) == 1 else None

    def _version_selected(self) -> None:
        info = self._selected_version()
        self.rollback_button.setEnabled(info is not None and not info.active)

    def rollback_selected(self) -> None:
        info = self._selected_version()
        if info is not None:
            self.rollback(info.model_version)

    def rollback(self, version: str) -> None:
        self.workers.db(_rollback, version, on_done=lambda _r: self._rolled_back(version),
                        on_error=self._failed)

    def _rolled_back(self, version: str) -> None:
        self.status.setText(f"{version} is the active model again.")
        self.state.models_changed()
        self.rolled_back.emit(version)

    def evaluate_missing(self) -> None:
        self._start_job("Evaluating rounds", _evaluate_missing,
                        on_done=lambda n: (self.status.setText(f"Evaluated {n} rounds."),
                                           self.refresh()))

    # ------------------------------------------------------------------------------- jobs
    @property
    def job(self):
        """The running review job (queue, calibration, auto-accept, evaluation), or None."""
        return self.jobs.job

    def _start_job(self, title: str, fn, *args, on_done) -> None:
        if self.jobs.busy:
            self.status.setText("Wait for the running review job to finish.")
            return
        try:
            self.jobs.start(title, fn, *args, on_done=on_done)
        except Exception as exc:  # noqa: BLE001 - e.g. no project open: shown, never raised
            dialogs.show_error(self, exc, "Review")
            return
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status.setText(f"{title}…")

    def _job_buttons(self) -> list[QPushButton]:
        return [self.build_button, self.calibrate_button, self.accept_button,
                self.evaluate_button]

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _busy_changed(self, busy: bool) -> None:
        for button in self._job_buttons():
            button.setEnabled(not busy)
        if not busy:
            self.progress.setVisible(False)
            if self.status.text().endswith("…"):
                self.status.setText("")

    def cancel(self) -> None:
        self.jobs.cancel()

    def _failed(self, exc: BaseException) -> None:
        self.status.setText("")
        dialogs.show_error(self, exc, "Review")

    # --------------------------------------------------------------------------- settings
    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("review/order", self.order_combo.currentData())
        settings.setValue("review/mode", self.mode_combo.currentData())
        settings.setValue("review/precision", self.precision.value())
        settings.setValue("review/accept_target", self.accept_target.value())

    def restore_settings(self, settings: QSettings) -> None:
        order = settings.value("review/order")
        if order:
            self.set_order(str(order))
        mode = self.mode_combo.findData(settings.value("review/mode"))
        if mode >= 0:
            self.mode_combo.setCurrentIndex(mode)
        for key, spin in (("precision", self.precision), ("accept_target", self.accept_target)):
            try:
                spin.setValue(float(settings.value(f"review/{key}", spin.value())))
            except (TypeError, ValueError):
                continue


def _pct(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
