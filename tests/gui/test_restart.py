"""After a restart the window comes back as the person left it: the Training and Review-loop
docks where they were, the training history and the last run's curves and per-class AP."""

from __future__ import annotations

from tests.gui.conftest import open_window
from tests.gui.loop_projects import copy_project, trained_project_dir  # noqa: F401


def test_docks_and_history_come_back_after_a_restart(qtbot, tmp_path, trained_project_dir,
                                                     settings, errors):
    root = copy_project(trained_project_dir, tmp_path)
    window = open_window(qtbot, root, settings)
    docks = window.loop_docks
    docks.training_dock.show()
    docks.review_dock.show()
    docks.training_dock.raise_()
    qtbot.waitUntil(lambda: docks.training.history.rowCount() == 2, timeout=30000)
    window.close()

    again = open_window(qtbot, None, settings)
    qtbot.waitUntil(lambda: again.model.rowCount() > 0, timeout=30000)
    panel = again.loop_docks.training
    assert again.loop_docks.training_dock.isVisible()
    assert not again.loop_docks.training_dock.isFloating()
    qtbot.waitUntil(lambda: panel.history.rowCount() == 2, timeout=30000)     # stored runs
    assert panel.history.item(1, 0).text() == "student-2"
    qtbot.waitUntil(lambda: panel.ap_bars is not None, timeout=30000)         # the last run's
    assert panel.curve_data                                                    # and its curves
    review = again.loop_docks.review
    qtbot.waitUntil(lambda: review.version_table.rowCount() == 2, timeout=30000)  # model versions
    again.close()
    assert errors == []
