"""What the training panel shows of runs, as three tabs: live pyqtgraph curves of each loss and of
the validation mAP (one point per epoch), the per-class AP of a model as bars, and the run history
table. A stored run is shown from its `metrics` (`show_run`); the figures are the engine's
(`engine.review.rounds.per_class_ap`, the round's review figures)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QWidget,
)

from app.style import style_plot
from engine.review.rounds import run_figure

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f")
# Legends sit where a curve seldom is (falling losses: top right; rising mAP: bottom right),
# in two columns on a translucent box, so they do not hide the data.
LEGEND_BRUSH = pg.mkBrush(128, 128, 128, 50)
HISTORY_COLUMNS = ["Version", "Stage", "Status", "Epochs", "Val mAP", "Started from", "Started"]


class TrainingCharts(QTabWidget):
    """Curves, per-class AP and history tabs. `curve_data[(stage, name)]` holds the plotted
    (epoch, value) points; `run_selected(run)` fires when a history row is chosen."""

    run_selected = Signal(object)     # engine TrainingRun

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list = []
        self.curve_data: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.ap_bars: pg.BarGraphItem | None = None
        pg.setConfigOptions(antialias=True)
        self.addTab(self._build_curves(), "Curves")
        self.ap_plot = pg.PlotWidget(title="Per-class AP (validation)")
        self.ap_plot.setYRange(0, 1)
        self.addTab(self.ap_plot, "Per-class AP")
        self.addTab(self._build_history(), "History")
        for plot in (self.loss_plot, self.map_plot, self.ap_plot):
            style_plot(plot)

    def _build_curves(self) -> QWidget:
        self.loss_plot = pg.PlotWidget(title="Loss per epoch")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.addLegend(offset=(-5, 5), colCount=2, brush=LEGEND_BRUSH)
        self.map_plot = pg.PlotWidget(title="Validation mAP per epoch")
        self.map_plot.setLabel("bottom", "epoch")
        self.map_plot.setYRange(0, 1)
        self.map_plot.addLegend(offset=(-5, -5), colCount=2, brush=LEGEND_BRUSH)
        for plot in (self.loss_plot, self.map_plot):
            plot.getPlotItem().legend.setVisible(False)
        curves = QWidget()
        layout = QHBoxLayout(curves)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.map_plot)
        return curves

    def _build_history(self) -> QTableWidget:
        self.history = QTableWidget(0, len(HISTORY_COLUMNS))
        self.history.setHorizontalHeaderLabels(HISTORY_COLUMNS)
        self.history.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.history.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history.verticalHeader().setVisible(False)
        self.history.itemSelectionChanged.connect(self._history_selected)
        return self.history

    # ------------------------------------------------------------------------------ curves
    def add_epoch(self, report) -> str:
        """Plot an engine EpochReport's losses and validation mAP; returns the status line's words
        on that mAP: its value, "not measured" (NaN, or null from a process's JSON: no class has
        a decided "no" on split val), or nothing without validation."""
        for key, value in report.losses.items():
            self.add_point(self.loss_plot, (report.stage, key), report.epoch, value)
        if "val_mAP" not in report.metrics:
            return ""
        value = report.metrics["val_mAP"]
        if value is None or not math.isfinite(value):
            return ", validation mAP not measured (no decided \"no\" on split val)"
        self.add_point(self.map_plot, (report.stage, "val_mAP"), report.epoch, value)
        return f", validation mAP {value:.3f}"

    def add_point(self, plot: pg.PlotWidget, key: tuple[str, str], x: int, y: float) -> None:
        points = self.curve_data.setdefault(key, [])
        points.append((x, float(y)))
        curve = self.curves.get(key)
        if curve is None:
            colour = PALETTE[len(self.curves) % len(PALETTE)]
            curve = plot.plot(name=f"{key[0]} {key[1]}", pen=pg.mkPen(colour, width=2),
                              symbol="o", symbolSize=5, symbolBrush=colour)
            self.curves[key] = curve
            plot.getPlotItem().legend.setVisible(True)
        curve.setData([p[0] for p in points], [p[1] for p in points])

    def clear_curves(self) -> None:
        for plot in (self.loss_plot, self.map_plot):
            plot.clear()
            plot.getPlotItem().legend.setVisible(False)      # an empty key would be a grey box
        self.curves.clear()
        self.curve_data.clear()

    def show_run(self, run) -> None:
        """Plot a stored run: its per-epoch curves and per-class AP."""
        from engine.review.rounds import per_class_ap

        self.clear_curves()
        for entry in (run.metrics or {}).get("epochs") or []:
            for key, value in (entry.get("losses") or {}).items():
                self.add_point(self.loss_plot, (run.stage, key), entry.get("epoch", 0), value)
            value = (entry.get("metrics") or {}).get("val_mAP")
            if value is not None and math.isfinite(value):
                self.add_point(self.map_plot, (run.stage, "val_mAP"), entry.get("epoch", 0), value)
        self.show_per_class_ap(per_class_ap(run))

    def show_per_class_ap(self, values: dict[str, float]) -> None:
        self.ap_plot.clear()
        self.ap_bars = None
        names = list(values)
        if not names:
            return
        heights = np.array([0.0 if math.isnan(values[n]) else values[n] for n in names])
        self.ap_bars = pg.BarGraphItem(x=np.arange(len(names)), height=heights, width=0.7,
                                       brush="#4e79a7")
        self.ap_plot.addItem(self.ap_bars)
        self.ap_plot.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
        self.ap_plot.setXRange(-0.6, len(names) - 0.4)

    # ------------------------------------------------------------------------------ history
    def fill_history(self, runs: list, select_last: bool = False) -> None:
        self.runs = list(runs)
        self.history.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            epochs = (run.metrics or {}).get("epochs") or []
            val_map = run_figure(run, "mAP")
            cells = [run.model_version or "", run.stage, run.status,
                     f"{len(epochs)}/{(run.config or {}).get('epochs', '?')}",
                     "" if math.isnan(val_map) else f"{val_map:.3f}",
                     (run.config or {}).get("init_from") or "scratch",
                     run.started_at.strftime("%Y-%m-%d %H:%M") if run.started_at else ""]
            for column, text in enumerate(cells):
                self.history.setItem(row, column, QTableWidgetItem(str(text)))
        if select_last and self.runs:
            self.history.selectRow(len(self.runs) - 1)

    def _history_selected(self) -> None:
        rows = {index.row() for index in self.history.selectedIndexes()}
        if len(rows) == 1:
            self.run_selected.emit(self.runs[rows.pop()])


