"""The review-loop docks inside the real main window: Model menu, docks, queue -> gallery,
batch tagging of the gallery selection."""

from __future__ import annotations

from tests.gui.conftest import open_window
from tests.gui.loop_projects import copy_project, trained_project_dir  # noqa: F401 - fixture


def test_loop_docks_in_the_main_window(qtbot, tmp_path, trained_project_dir, settings, errors):
    window = open_window(qtbot, copy_project(trained_project_dir, tmp_path), settings)
    docks = window.loop_docks
    qtbot.waitUntil(lambda: window.model.rowCount() == 120, timeout=20000)
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus.index("&Model") == menus.index("&Help") - 1
    assert "Model" in window.actions.groups
    assert docks.training_dock.widget() is docks.training
    assert docks.review_dock.widget() is docks.review

    review = docks.review
    review.set_order("random")
    with qtbot.waitSignal(review.queue_ready, timeout=60000) as ready:
        review.build_queue()
    third = ready.args[0][3]
    review.queue_list.setCurrentRow(3)
    assert window.gallery.current_image_id() == third

    window.gallery.select_row(0)
    chosen = window.selected_image_ids()
    assert chosen
    with qtbot.waitSignal(docks.tagger.finished, timeout=60000) as finished:
        docks.tagger.selection_action.trigger()
    assert finished.args[0].image_ids == chosen
    qtbot.waitUntil(lambda: "Tagged 1 images" in window.status.currentMessage(), timeout=10000)

    docks.training.epochs.setValue(5)
    window.save_settings()
    assert int(settings.value("training/epochs")) == 5
    window.close()
    assert errors == []
