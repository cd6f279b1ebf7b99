"""The review panel's Per class tab: the active student on the validation split
(`engine.review.class_views`), measured as a review job (never on the GUI thread).

- A class picker and that class's precision-recall curve, its AP in the title and its current
  threshold marked as the point the curve reaches there (its precision and recall in the title);
- a heat map of the prediction matrix (rows: the class an image is tagged with, columns: the class
  predicted on it at its threshold, cells: share of the row's images) or of the tags' own
  co-occurrence, each cell's counts in its tooltip. Clicking a row picks that class.

The figures go stale when the models, thresholds or classes change; a stale tab measures again
when it is shown (or at once when it is in view), after the running review job if there is one.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.loop.review_common import ReviewJobs, figure_text
from app.state import ProjectState
from app.style import style_plot
from engine.errors import UserError
from engine.review import class_views

CURVE_COLOUR = "#4e79a7"
MARK_COLOUR = "#f28e2b"
HIT_COLOUR = QColor("#59a14f")      # the diagonal: recall
MISS_COLOUR = QColor("#e15759")     # off the diagonal: another class predicted
MATRICES = (("predicted", "Predicted on images tagged (row)"),
            ("together", "Tagged together (ground truth)"))


def _measure(store, *, progress, should_stop):
    """The active student's `ClassViews` on the val split, or why there are none (a text)."""
    try:
        return class_views.class_views(store, progress=progress, should_stop=should_stop)
    except UserError as exc:
        return str(exc)


def _blend(base: QColor, accent: QColor, amount: float) -> QColor:
    a = min(max(amount, 0.0), 1.0) * 0.85
    return QColor(round(base.red() * (1 - a) + accent.red() * a),
                  round(base.green() * (1 - a) + accent.green() * a),
                  round(base.blue() * (1 - a) + accent.blue() * a))


def _short(name: str, length: int = 7) -> str:
    """A column heading narrow enough for a dozen classes side by side (the tooltip has it all)."""
    return name if len(name) <= length else name[:length - 1] + "…"


def _together_tip(matrix, i: int, j: int) -> str:
    names, n = matrix.class_names, int(matrix.positives[i])
    both = int(matrix.cooccurrence[i, j])
    if i == j:
        return f"{n} images are tagged {names[i]}."
    share = f" ({100.0 * both / n:.0f}% of those tagged {names[i]})" if n else ""
    return f"{both} images are tagged both {names[i]} and {names[j]}{share}."


class PerClassTab(QWidget):
    """Precision-recall curve of the picked class and the class-by-class heat map."""

    def __init__(self, state: ProjectState, jobs: ReviewJobs,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.views: class_views.ClassViews | None = None
        self.stale = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._build_controls())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_plot())
        splitter.addWidget(self._build_matrix())
        splitter.setSizes([400, 500])
        layout.addWidget(splitter, 1)
        jobs.busy_changed.connect(self._busy_changed)
        state.classes_changed.connect(self.mark_stale)     # thresholds; the panel: versions

    def _build_controls(self) -> QHBoxLayout:
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class whose precision-recall curve is shown.")
        self.class_combo.currentIndexChanged.connect(self._plot_class)
        self.matrix_combo = QComboBox()
        for key, text in MATRICES:
            self.matrix_combo.addItem(text, key)
        self.matrix_combo.setToolTip("Rows: the class an image is tagged with. Columns: the class "
                                     "the model predicts on it at its threshold, or the classes "
                                     "tagged on it too.")
        self.matrix_combo.currentIndexChanged.connect(self._fill_matrix)
        self.refresh_button = QPushButton("Measure again")
        self.refresh_button.setToolTip("Measure the active student on the validation split at "
                                       "the classes' current thresholds.")
        self.refresh_button.clicked.connect(self.refresh)
        self.note = QLabel("")
        row = QHBoxLayout()
        row.addWidget(QLabel("Class"))
        row.addWidget(self.class_combo, 1)
        row.addWidget(self.note, 2)
        row.addWidget(self.matrix_combo)
        row.addWidget(self.refresh_button)
        return row

    def _build_plot(self) -> pg.PlotWidget:
        self.pr_plot = pg.PlotWidget()
        item = self.pr_plot.getPlotItem()
        item.setTitle("Precision-recall on the validation split", size="9pt")
        item.setLabel("bottom", "recall")
        item.setLabel("left", "precision")
        item.setXRange(0, 1, padding=0.02)
        item.setYRange(0, 1, padding=0.02)
        item.showGrid(x=True, y=True, alpha=0.2)
        self.pr_curve = self.pr_plot.plot(pen=pg.mkPen(CURVE_COLOUR, width=2))
        self.threshold_marker = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(MARK_COLOUR),
                                                   pen=pg.mkPen("k"))
        self.pr_plot.addItem(self.threshold_marker)
        style_plot(self.pr_plot)
        return self.pr_plot

    def _build_matrix(self) -> QTableWidget:
        self.matrix_table = QTableWidget(0, 0)
        self.matrix_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for header in (self.matrix_table.horizontalHeader(), self.matrix_table.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.matrix_table.verticalHeader().sectionClicked.connect(self.class_combo.setCurrentIndex)
        self.matrix_table.cellClicked.connect(lambda row, _col: self.class_combo.setCurrentIndex(row))
        return self.matrix_table

    # ------------------------------------------------------------------------------ measuring
    def mark_stale(self) -> None:
        """The figures no longer match the models or thresholds: measure again when in view."""
        self.stale = True
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        if self.jobs.busy or self.jobs.workers.store is None:
            self.stale = True                   # measured after the running job (_busy_changed)
            return                              # or once a project is open (the panel's refresh)
        self.stale = False
        self.jobs.run("Measuring the classes", _measure, on_done=self._measured)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self.stale:
            self.refresh()

    def _busy_changed(self, busy: bool) -> None:
        self.refresh_button.setEnabled(not busy)
        if not busy and self.stale and self.isVisible():
            QTimer.singleShot(0, self, self.refresh)  # after the other tabs have seen the slot free

    def _measured(self, outcome) -> None:
        if isinstance(outcome, str):
            self.views = None
            self.note.setText(outcome)
            self.class_combo.clear()
            self.matrix_table.clear()
            self.matrix_table.setRowCount(0)
            self.matrix_table.setColumnCount(0)
            self.pr_curve.setData([], [])
            self.threshold_marker.setData([], [])
            return
        self.views = outcome
        self.note.setText(f"{outcome.model_version} on {outcome.n_images} {outcome.split} "
                          f"images, mAP {figure_text(outcome.mean_ap())}")
        current = self.class_combo.currentText()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItems(outcome.class_names)
        if current in outcome.class_names:
            self.class_combo.setCurrentIndex(outcome.class_names.index(current))
        self.class_combo.blockSignals(False)
        self._plot_class()
        self._fill_matrix()

    # ------------------------------------------------------------------------------ showing
    def _plot_class(self) -> None:
        k = self.class_combo.currentIndex()
        if self.views is None or k < 0:
            return
        curve, name = self.views.curves[k], self.views.class_names[k]
        threshold = float(self.views.thresholds[k])
        item = self.pr_plot.getPlotItem()
        self.threshold_marker.setData([], [])
        if curve.positives == 0:
            self.pr_curve.setData([], [])
            item.setTitle(f"{name}: no validation image is tagged with it", size="9pt")
            return
        self.pr_curve.setData(np.r_[0.0, curve.recall], np.r_[curve.precision[0], curve.precision])
        precision, recall = self.views.operating_point(k)
        if math.isnan(precision):
            at = "nothing predicted"
        else:
            self.threshold_marker.setData([recall], [precision])
            at = f"P {precision:.2f}, R {recall:.2f}"
        item.setTitle(f"{name} &nbsp; AP {curve.ap:.3f} &nbsp; ({curve.positives} positives) "
                      f"&nbsp; <span style='color:{MARK_COLOUR}'>● threshold {threshold:.2f}: "
                      f"{at}</span>", size="9pt")

    def _fill_matrix(self) -> None:
        if self.views is None:
            return
        matrix, names = self.views.matrix, self.views.class_names
        together = self.matrix_combo.currentData() == "together"
        base = self.palette().color(QPalette.ColorRole.Base)
        self.matrix_table.setRowCount(len(names))
        self.matrix_table.setColumnCount(len(names))
        self.matrix_table.setVerticalHeaderLabels(
            [f"{name} ({int(n)})" for name, n in zip(names, matrix.positives)])
        self.matrix_table.setHorizontalHeaderLabels([_short(name) for name in names])
        for j, name in enumerate(names):
            self.matrix_table.horizontalHeaderItem(j).setToolTip(f"Predicted: {name}")
        for i in range(len(names)):
            n = int(matrix.positives[i])
            for j in range(len(names)):
                count = int(matrix.cooccurrence[i, j] if together else matrix.counts[i, j])
                share = count / n if n else math.nan
                item = QTableWidgetItem("" if math.isnan(share) else f"{100 * share:.0f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setData(Qt.ItemDataRole.UserRole, count)
                item.setToolTip(_together_tip(matrix, i, j) if together
                                else matrix.describe(i, j))
                if not math.isnan(share):
                    accent = HIT_COLOUR if i == j else MISS_COLOUR
                    item.setBackground(QBrush(_blend(base, accent, share)))
                self.matrix_table.setItem(i, j, item)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._fill_matrix()                 # cell colours follow the theme
