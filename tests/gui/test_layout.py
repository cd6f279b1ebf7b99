"""At the default window size (1400x860) with the Training dock open, every row of the training
form shows without scrolling; status lines and names that do not fit end in "…" with the whole
text as a tooltip; plot keys never sit on the data."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel


def fully_visible(widget) -> bool:
    region = widget.visibleRegion().boundingRect()
    return widget.isVisible() and region.size() == widget.size()


def test_training_form_fits_the_default_window(qtbot, window):
    window.resize(1400, 860)
    docks = window.loop_docks
    docks.training_dock.show()
    docks.training_dock.raise_()
    window._default_dock_sizes()
    panel = docks.training
    widgets = [panel.stage_combo, panel.teacher_backbone, panel.student_backbone, panel.epochs,
               panel.image_size, panel.student_size, panel.kd, panel.proposals, panel.device,
               panel.pretrained, panel.warm_start, panel.start_button, panel.cancel_button]
    qtbot.waitUntil(lambda: all(fully_visible(w) for w in widgets), timeout=10000)
    assert fully_visible(panel.status)
    assert panel.charts.width() > 300                     # the curves keep room beside the form


def test_long_status_and_names_elide_with_a_tooltip(qtbot, window):
    from app.elided import ElidedLabel

    label = ElidedLabel("Idle.")
    qtbot.addWidget(label)
    label.resize(120, 20)
    label.show()
    text = "Done: teacher-3 completed, student-4 completed. val mAP 0.812, CF1 0.774, OF1 0.801."
    label.setText(text)
    assert label.text() == text and label.is_elided()
    assert label.shown_text().endswith("…") and label.toolTip() == text
    label.resize(900, 20)
    assert not label.is_elided() and label.toolTip() == ""


def test_rounds_plot_key_is_in_the_title_not_on_the_data(qtbot, window):
    rounds = window.loop_docks.review.rounds_tab
    item = rounds.rounds_plot.getPlotItem()
    assert item.legend is None
    title = item.titleLabel.text
    assert all(name in title for name in ("mAP", "CF1", "OF1"))
    charts = window.loop_docks.training.charts
    for plot in (charts.loss_plot, charts.map_plot):
        assert plot.getPlotItem().legend.columnCount == 2
    assert isinstance(window.filters.count_label, QLabel)
