"""The review panel's Rounds tab: mAP / CF1 / OF1 on the validation split over the training rounds
(`engine.review.rounds.round_history`) beside the number of tags a person had set, and the model
versions of both stages with "Roll back to this version" (`engine.review.rounds.rollback`) and
"Evaluate unmeasured rounds" (`engine.review.rounds.evaluate_round`)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.loop.review_common import ReviewJobs, figure_text
from app.state import ProjectState
from app.style import style_plot
from engine.review import rounds


class RoundsTab(QWidget):
    """Figures over rounds (plot) and the model versions (table, rollback, evaluation)."""

    rolled_back = Signal(str)         # the model version made active

    def __init__(self, state: ProjectState, jobs: ReviewJobs,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.jobs = jobs
        self.rounds: list = []
        self.versions: list = []
        self.tag_bars: pg.BarGraphItem | None = None
        layout = QHBoxLayout(self)
        layout.addWidget(self._build_plot(), 3)
        layout.addLayout(self._build_versions(), 2)
        jobs.busy_changed.connect(lambda busy: self.evaluate_button.setEnabled(not busy))

    def _build_plot(self) -> pg.PlotWidget:
        colours = (("mAP", "#4e79a7"), ("CF1", "#f28e2b"), ("OF1", "#59a14f"))
        key = " ".join(f"<span style='color:{c}'>■ {name}</span>" for name, c in colours)
        self.rounds_plot = pg.PlotWidget()     # the key sits in the title: it never hides data
        item = self.rounds_plot.getPlotItem()
        item.setTitle(f"Validation figures over rounds &nbsp; {key}", size="9pt")
        item.setLabel("bottom", "round")
        item.setLabel("left", "mAP / CF1 / OF1")
        item.setYRange(0, 1)
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
            for key, colour in colours}
        style_plot(self.rounds_plot)
        return self.rounds_plot

    def _build_versions(self) -> QVBoxLayout:
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
        column = QVBoxLayout()
        column.addWidget(self.version_table, 1)
        column.addLayout(buttons)
        return column

    # ------------------------------------------------------------------------------ showing
    def refresh_rounds(self) -> None:
        self.workers.db(rounds.version_history, key="review-rounds", on_done=self._fill_rounds)

    def _fill_rounds(self, outcome) -> None:
        self.rounds, self.versions = outcome
        self._plot_rounds()
        self.version_table.setRowCount(len(self.versions))
        for row, info in enumerate(self.versions):
            cells = [info.model_version, info.stage, figure_text(info.mAP),
                     figure_text(info.CF1), figure_text(info.OF1), str(info.person_tags),
                     info.init_from or "scratch", "✓" if info.active else ""]
            for column, text in enumerate(cells):
                self.version_table.setItem(row, column, QTableWidgetItem(text))
        self._version_selected()

    def _plot_rounds(self) -> None:
        x = np.array([r.index for r in self.rounds], dtype=float)
        for key, curve in self.round_curves.items():
            y = np.array([getattr(r, key) for r in self.rounds], dtype=float)
            keep = ~np.isnan(y)
            curve.setData(x[keep], y[keep])
        if self.tag_bars is not None:
            self._tags_view.removeItem(self.tag_bars)
            self.tag_bars = None
        if not self.rounds:
            return
        tags = np.array([r.person_tags for r in self.rounds], dtype=float)
        self.tag_bars = pg.BarGraphItem(x=x, height=tags, width=0.35,
                                        brush=pg.mkBrush(150, 150, 150, 90))
        self._tags_view.addItem(self.tag_bars)
        self._tags_view.setYRange(0, max(1.0, float(tags.max()) * 1.1))
        self.rounds_plot.getPlotItem().setXRange(0.5, len(self.rounds) + 0.5)
        self.rounds_plot.getPlotItem().getAxis("bottom").setTicks(
            [[(r.index, str(r.index)) for r in self.rounds]])

    # ------------------------------------------------------------------------------ versions
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
        self.workers.db(rounds.rollback, version, on_done=lambda _r: self._rolled_back(version),
                        on_error=self.jobs.fail)

    def _rolled_back(self, version: str) -> None:
        self.jobs.say(f"{version} is the active model again.")
        self.state.models_changed()
        self.rolled_back.emit(version)

    def evaluate_missing(self) -> None:
        self.jobs.run("Evaluating rounds", rounds.evaluate_unmeasured, on_done=self._evaluated)

    def _evaluated(self, count: int) -> None:
        self.jobs.say(f"Evaluated {count} rounds.")
        self.refresh_rounds()
