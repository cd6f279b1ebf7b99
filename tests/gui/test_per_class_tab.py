"""The review panel's Per class tab on a project with two really trained (tiny) student rounds: the
precision-recall curve, its threshold mark and AP, and the prediction / co-occurrence heat map show
what the validation data says, and follow threshold edits and rollbacks."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.gui.loop_projects import (  # noqa: F401 - fixtures
    copy_project,
    loop_state,
    trained_project_dir,
)


@pytest.fixture
def panel(qtbot, tmp_path, trained_project_dir, loop_state, errors):
    from app.loop.review_panel import ReviewPanel

    state = loop_state(copy_project(trained_project_dir, tmp_path))
    widget = ReviewPanel(state)
    qtbot.addWidget(widget)
    widget.resize(1100, 420)
    widget.show()
    widget.refresh()
    qtbot.waitUntil(lambda: widget.version_table.rowCount() == 2, timeout=20000)
    yield widget
    assert errors == []


def _expected(store, version):
    """Scores (missing = 0), labels and thresholds of `version` on the val split, by hand."""
    matrix = store.tags.label_matrix(split="val")
    classes = store.classes.list()
    stored = store.suggestions.for_images(matrix.image_ids, version)
    scores = np.zeros((len(matrix.image_ids), len(classes)))
    column = {c.id: k for k, c in enumerate(classes)}
    for i, image_id in enumerate(matrix.image_ids):
        for s in stored[image_id]:
            scores[i, column[s.class_id]] = s.confidence
    thresholds = np.array([c.threshold for c in classes])
    return scores, matrix.labels > 0.5, thresholds


def _show_tab(qtbot, panel):
    tab = panel.per_class_tab
    panel.tabs.setCurrentWidget(tab)                  # shown: measured as a review job
    qtbot.waitUntil(lambda: tab.views is not None and panel.job is None, timeout=120000)
    return tab


def _measured_again(qtbot, panel, tab, condition):
    qtbot.waitUntil(lambda: tab.views is not None and condition(tab.views) and panel.job is None,
                    timeout=120000)


def test_curve_and_matrix_show_the_validation_data(qtbot, panel):
    from engine.metrics import per_class_average_precision
    from engine.review.rounds import per_class_ap
    from engine.review.scores import active_version

    store = panel.workers.store
    assert panel.tabs.tabText(panel.tabs.indexOf(panel.per_class_tab)) == "Per class"
    tab = _show_tab(qtbot, panel)
    version = active_version(store)
    assert tab.views.model_version == version == "student-2"
    scores, tagged, thresholds = _expected(store, version)
    names = store.classes.names()
    k = next(k for k in range(len(names)) if tagged[:, k].any() and (scores[:, k] >= thresholds[k]).any())
    tab.class_combo.setCurrentIndex(k)

    # the curve: AP in the title as evaluate_round stored it, recall up to 1, the threshold marked
    ap = per_class_average_precision(scores, tagged)[k]
    assert per_class_ap(store.runs.by_version(version))[names[k]] == pytest.approx(ap)
    title = tab.pr_plot.getPlotItem().titleLabel.text
    assert names[k] in title and f"AP {ap:.3f}" in title
    x, y = tab.pr_curve.getData()
    assert x[0] == 0.0 and x[-1] == pytest.approx(1.0) and np.all(np.diff(x) >= 0)
    assert np.all((y >= 0) & (y <= 1))
    predicted = scores[:, k] >= thresholds[k]
    hits = int((predicted & tagged[:, k]).sum())
    (mx,), (my,) = tab.threshold_marker.getData()
    assert mx == pytest.approx(hits / tagged[:, k].sum())
    assert my == pytest.approx(hits / predicted.sum())
    assert f"threshold {thresholds[k]:.2f}: P {my:.2f}, R {mx:.2f}" in title

    # the heat map: rows tagged, columns predicted, counts behind each cell
    table = tab.matrix_table
    assert table.rowCount() == table.columnCount() == len(names)
    assert table.horizontalHeaderItem(1).toolTip() == f"Predicted: {names[1]}"
    assert names[1].startswith(table.horizontalHeaderItem(1).text().rstrip("…"))
    assert table.verticalHeaderItem(k).text() == f"{names[k]} ({int(tagged[:, k].sum())})"
    counts = tagged.T.astype(int) @ (scores >= thresholds).astype(int)
    shown = [[table.item(i, j).data(Qt.ItemDataRole.UserRole) for j in range(len(names))]
             for i in range(len(names))]
    assert shown == counts.tolist()
    j = (k + 1) % len(names)
    assert f"of the {int(tagged[:, k].sum())} images tagged {names[k]}" in table.item(k, j).toolTip()
    rate = counts[k, k] / tagged[:, k].sum()
    assert table.item(k, k).text() == f"{100 * rate:.0f}"

    tab.matrix_combo.setCurrentIndex(1)               # the tags' own co-occurrence
    together = tagged.T.astype(int) @ tagged.astype(int)
    assert table.item(k, j).data(Qt.ItemDataRole.UserRole) == together[k, j]
    assert "tagged both" in table.item(k, j).toolTip()

    table.verticalHeader().sectionClicked.emit(j)     # a row picks its class
    assert tab.class_combo.currentIndex() == j


def test_tab_follows_a_threshold_edit_and_a_rollback(qtbot, panel):
    store = panel.workers.store
    tab = _show_tab(qtbot, panel)
    first = store.classes.list()[0]
    panel.thresholds_tab.set_threshold(first.id, 0.0)  # every val image predicted class 0
    _measured_again(qtbot, panel, tab, lambda views: views.thresholds[0] == 0.0)
    positives = tab.views.matrix.positives
    column = [tab.matrix_table.item(i, 0).data(Qt.ItemDataRole.UserRole)
              for i in range(len(positives))]
    assert column == positives.tolist()
    tab.class_combo.setCurrentIndex(0)
    (mx,), _ = tab.threshold_marker.getData()
    assert mx == pytest.approx(1.0)                   # recall 1 at threshold 0

    with qtbot.waitSignal(panel.rolled_back, timeout=10000):
        panel.rounds_tab.rollback("student-1")
    _measured_again(qtbot, panel, tab, lambda views: views.model_version == "student-1")
    assert "student-1" in tab.note.text()


def test_dark_theme_reaches_the_curve_and_the_heat_map(qtbot, panel, settings):
    from PySide6.QtGui import QPalette

    from app.style import dark_palette, switch_theme

    tab = _show_tab(qtbot, panel)
    matrix = tab.views.matrix
    i, j = next((i, j) for i in range(len(matrix.positives)) for j in range(len(matrix.positives))
                if matrix.positives[i] and not matrix.counts[i, j])
    light = tab.matrix_table.item(i, j).background().color()
    dark_base = dark_palette().color(QPalette.ColorRole.Base)
    try:
        switch_theme(settings, "dark")
        assert tab.pr_plot.backgroundBrush().color() == dark_base
        assert light != dark_base                   # a 0% cell is the theme's base colour
        qtbot.waitUntil(lambda: tab.matrix_table.item(i, j).background().color() == dark_base,
                        timeout=5000)
    finally:
        switch_theme(settings, "light")
