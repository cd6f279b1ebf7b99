"""Scrolling a form with the mouse wheel never changes a spin box or combo box under the pointer
unless the person gave it the focus; the dark theme reaches the pyqtgraph plots at once."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QPalette, QWheelEvent
from PySide6.QtWidgets import QApplication


def wheel(widget, steps: int = 1) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_wheel_changes_only_focused_spin_and_combo_boxes(qtbot, window):
    training = window.loop_docks.training
    window.loop_docks.training_dock.show()
    window.loop_docks.training_dock.raise_()
    epochs, stage = training.epochs, training.stage_combo
    qtbot.waitUntil(lambda: epochs.isVisible(), timeout=10000)
    window.gallery.setFocus()
    before, stage_before = epochs.value(), stage.currentIndex()
    for widget in (epochs, epochs.lineEdit(), stage):
        wheel(widget, 3)
    assert epochs.value() == before and stage.currentIndex() == stage_before
    assert not epochs.hasFocus()                         # the wheel does not give the focus
    assert epochs.focusPolicy() == Qt.FocusPolicy.StrongFocus

    epochs.setFocus()                                    # clicked or tabbed into: it takes it
    qtbot.waitUntil(epochs.hasFocus, timeout=5000)
    wheel(epochs, 2)
    assert epochs.value() == before + 2


def test_dark_theme_reaches_the_plots_at_once(qtbot, window, settings):
    import pyqtgraph as pg

    from app.style import dark_palette, switch_theme

    window.loop_docks                                    # the docks with the plots
    plots = [w for w in QApplication.allWidgets() if isinstance(w, pg.PlotWidget)]
    assert plots
    dark_base = dark_palette().color(QPalette.ColorRole.Base)
    try:
        switch_theme(settings, "dark")
        for plot in plots:
            assert plot.backgroundBrush().color() == dark_base
            axis = plot.getPlotItem().getAxis("left")
            assert axis.textPen().color() == dark_palette().color(QPalette.ColorRole.Text)
        switch_theme(settings, "light")
        for plot in plots:
            assert plot.backgroundBrush().color() != dark_base
    finally:
        switch_theme(settings, "light")
