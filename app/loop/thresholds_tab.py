"""The review panel's Thresholds tab: calibrate every class's threshold on the validation split
(best F1, or the lowest threshold reaching a precision) with `engine.review.thresholds`; edit a
threshold by hand (kept by later calibrations until "Let calibration decide"). The auto-accept
rule (`engine.review.auto_accept`): suggestions above a per-class precision target become tags with
source "model rule" in one batch, pushed on the undo stack (`app.undo.AutoAcceptCommand`), so
Ctrl+Z reverts the whole rule in one step."""

from __future__ import annotations

import math

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.loop.review_common import ReviewJobs, figure_text
from app.state import ProjectState
from app.undo import AutoAcceptCommand
from engine.review import auto_accept, thresholds


def _calibrate(store, mode: str, target: float, *, progress, should_stop):
    return thresholds.calibrate_thresholds(store, mode=mode, precision_target=target,
                                           progress=progress, should_stop=should_stop)


def _auto_accept(store, target: float, *, progress, should_stop):
    return auto_accept.auto_accept(store, precision_target=target, progress=progress,
                                   should_stop=should_stop)


def _thresholds(store) -> list[tuple[int, str, float, bool]]:
    """(class id, name, threshold, set by hand) of every class, for the table."""
    manual = thresholds.manual_threshold_ids(store)
    return [(c.id, c.name, float(c.threshold), c.id in manual) for c in store.classes.list()]


def _fraction(value: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.5, 1.0)
    spin.setSingleStep(0.01)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class ThresholdsTab(QWidget):
    """Calibration, the per-class threshold table and the auto-accept rule."""

    thresholds_changed = Signal()
    auto_accepted = Signal(object)    # engine.review.auto_accept.AutoAcceptResult

    def __init__(self, state: ProjectState, jobs: ReviewJobs,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.jobs = jobs
        self.calibration = None
        self._filling = False
        layout = QHBoxLayout(self)
        layout.addLayout(self._build_thresholds(), 3)
        layout.addLayout(self._build_rule(), 1)
        jobs.busy_changed.connect(self._busy_changed)
        state.classes_changed.connect(self.refresh_thresholds)

    def _build_thresholds(self) -> QVBoxLayout:
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Best F1", "f1")
        self.mode_combo.addItem("Precision at least", "precision")
        self.mode_combo.setItemData(0, "Each class's threshold where F1 on the validation split "
                                       "is highest.", Qt.ItemDataRole.ToolTipRole)
        self.mode_combo.setItemData(1, "Each class's lowest threshold whose precision on the "
                                       "validation split reaches the target.",
                                    Qt.ItemDataRole.ToolTipRole)
        self.precision = _fraction(0.9, "Precision target for calibration.")
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
        calibration = QHBoxLayout()
        calibration.addWidget(self.mode_combo)
        calibration.addWidget(self.precision)
        calibration.addWidget(self.calibrate_button)
        column = QVBoxLayout()
        column.addLayout(calibration)
        column.addWidget(self.threshold_table, 1)
        column.addWidget(self.auto_button)
        return column

    def _build_rule(self) -> QVBoxLayout:
        self.accept_target = _fraction(0.95, "Suggestions are accepted where the class's "
                                             "precision on the validation split reaches this.")
        self.accept_button = QPushButton("Auto-accept suggestions")
        self.accept_button.setToolTip("Turn suggestions above each class's threshold for this "
                                      "precision into tags (source 'model rule'), on training "
                                      "images without a tag for that class. Undo (Ctrl+Z) "
                                      "reverts the whole rule in one step.")
        self.accept_button.clicked.connect(self.run_auto_accept)
        self.accept_label = QLabel("")
        self.accept_label.setWordWrap(True)
        rule = QGroupBox("Auto-accept rule")
        rule_form = QFormLayout(rule)
        rule_form.addRow("Precision target", self.accept_target)
        rule_form.addRow(self.accept_button)
        rule_form.addRow(self.accept_label)
        column = QVBoxLayout()
        column.addWidget(rule)
        column.addStretch(1)
        return column

    def _busy_changed(self, busy: bool) -> None:
        self.calibrate_button.setEnabled(not busy)
        self.accept_button.setEnabled(not busy)

    # ------------------------------------------------------------------------------ calibration
    def calibrate(self) -> None:
        self.jobs.run("Calibrating thresholds", _calibrate, self.mode_combo.currentData(),
                      self.precision.value(), on_done=self._calibrated)

    def _calibrated(self, report) -> None:
        self.calibration = report
        self.jobs.say(report.summary())
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
                cells += [figure_text(choice.precision), figure_text(choice.recall),
                          figure_text(choice.f1), str(choice.positives)]
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

    # ------------------------------------------------------------------------------ by hand
    def _threshold_edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        class_id = int(item.data(Qt.ItemDataRole.UserRole))
        try:
            value = float(item.text().replace(",", "."))
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            self.jobs.say("A threshold is a number between 0 and 1.")
            self.refresh_thresholds()
            return
        self.set_threshold(class_id, value)

    def set_threshold(self, class_id: int, value: float) -> None:
        """Set a class's threshold by hand (calibration keeps it)."""
        self.workers.db(thresholds.set_manual_threshold, class_id, value,
                        on_done=lambda _r: self._threshold_saved(), on_error=self.jobs.fail)

    def _threshold_saved(self) -> None:
        self.state.reload_classes()
        self.refresh_thresholds()
        self.thresholds_changed.emit()

    def _clear_manual_selected(self) -> None:
        rows = {index.row() for index in self.threshold_table.selectedIndexes()}
        for row in rows:
            item = self.threshold_table.item(row, 0)
            if item is not None:
                self.workers.db(thresholds.clear_manual_threshold,
                                int(item.data(Qt.ItemDataRole.UserRole)),
                                on_done=lambda _r: self.refresh_thresholds())

    # ------------------------------------------------------------------------------ auto-accept
    def run_auto_accept(self) -> None:
        self.jobs.run("Auto-accepting suggestions", _auto_accept, self.accept_target.value(),
                      on_done=self._auto_accepted)

    def _auto_accepted(self, result) -> None:
        self.accept_label.setText(result.summary() + (" Undo (Ctrl+Z) reverts it in one step."
                                                      if result.batch else ""))
        if result.batch is not None:
            self.state.undo_stack.push(AutoAcceptCommand(self.state, result))
            self.state.tags_changed.emit(set())
            self.state.refresh_counts()
        self.auto_accepted.emit(result)

    # ------------------------------------------------------------------------------ settings
    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("review/mode", self.mode_combo.currentData())
        settings.setValue("review/precision", self.precision.value())
        settings.setValue("review/accept_target", self.accept_target.value())

    def restore_settings(self, settings: QSettings) -> None:
        mode = self.mode_combo.findData(settings.value("review/mode"))
        if mode >= 0:
            self.mode_combo.setCurrentIndex(mode)
        for key, spin in (("precision", self.precision), ("accept_target", self.accept_target)):
            try:
                spin.setValue(float(settings.value(f"review/{key}", spin.value())))
            except (TypeError, ValueError):
                continue
