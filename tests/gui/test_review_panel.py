"""The review panel on a project with two really trained (tiny) student rounds: queue orders,
threshold calibration and manual override, auto-accept undone in one step, rounds and rollback."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from engine.review.queue import QUEUE_ORDERS
from engine.store import TagEdit
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
    widget.show()
    widget.refresh()
    qtbot.waitUntil(lambda: widget.version_table.rowCount() == 2, timeout=20000)
    yield widget
    assert errors == []


def _build(qtbot, panel, key):
    panel.set_order(key)
    with qtbot.waitSignal(panel.queue_ready, timeout=180000) as ready:
        panel.build_queue()
    qtbot.waitUntil(lambda: panel.job is None, timeout=10000)
    return ready.args[0]


def test_orders_have_tooltips_and_build_queues(qtbot, panel, errors):
    for index, order in enumerate(QUEUE_ORDERS):
        assert panel.order_combo.itemData(index, Qt.ItemDataRole.ToolTipRole) == order.tooltip
    store = panel.workers.store
    readable = len(store.images.ids())
    uncertain = _build(qtbot, panel, "uncertain")
    assert len(uncertain) == readable - 1                     # one image was reviewed (person edit)
    assert "vs threshold" in panel.queue_list.item(0).text()
    mistakes = _build(qtbot, panel, "mistakes")
    assert len(mistakes) == readable - 1 and "out-of-fold model" in panel.queue_list.item(0).text()
    assert "flagged" in panel.queue_note.text()
    unreviewed = _build(qtbot, panel, "unreviewed")
    assert len(unreviewed) == readable and unreviewed != uncertain
    activated = []
    panel.image_activated.connect(activated.append)
    panel.queue_list.setCurrentRow(2)
    assert activated == [unreviewed[2]]
    panel.set_order("disagreement")                            # no teacher in this project
    panel.build_queue()
    qtbot.waitUntil(lambda: bool(errors), timeout=20000)
    assert "teacher" in str(errors.pop())


def test_calibrate_edit_by_hand_and_auto_accept_with_one_step_undo(qtbot, panel):
    store = panel.workers.store
    with qtbot.waitSignal(panel.thresholds_changed, timeout=120000):
        panel.calibrate()
    qtbot.waitUntil(lambda: panel.threshold_table.rowCount() == 12
                    and panel.threshold_table.item(0, 4).text() != "", timeout=10000)
    assert "Calibrated" in panel.status.text()
    first = store.classes.list()[0]
    with qtbot.waitSignal(panel.thresholds_changed, timeout=10000):
        panel.threshold_table.item(0, 1).setText("0.42")       # typed into the table
    assert store.classes.list()[0].threshold == pytest.approx(0.42)
    qtbot.waitUntil(lambda: panel.threshold_table.item(0, 6).text() == "hand", timeout=10000)

    train = store.tags.for_images(store.images.ids(split="train"))
    store.tags.apply([TagEdit(t.image_id, t.class_id, None) for rows in train.values()
                      for t in rows if not t.positive and t.source == "import"], source="import",
                     reviewed=False)     # a partially tagged library: the rule fills unknowns
    before = {(t.image_id, t.class_id, t.positive, t.source)
              for rows in store.tags.for_images(store.images.ids()).values() for t in rows}
    panel.accept_target.setValue(0.5)
    with qtbot.waitSignal(panel.auto_accepted, timeout=120000) as accepted:
        panel.run_auto_accept()
    result = accepted.args[0]
    assert result.count > 0
    assert panel.state.undo_stack.count() == 1
    rule_tags = [t for rows in store.tags.for_images(store.images.ids()).values() for t in rows
                 if t.source == "model rule"]
    assert len(rule_tags) == result.count
    panel.state.undo_stack.undo()
    panel.workers.wait_idle()
    qtbot.waitUntil(lambda: not [t for rows in store.tags.for_images(store.images.ids()).values()
                                 for t in rows if t.source == "model rule"], timeout=10000)
    after = {(t.image_id, t.class_id, t.positive, t.source)
             for rows in store.tags.for_images(store.images.ids()).values() for t in rows}
    assert after == before
    panel.state.undo_stack.redo()
    panel.workers.wait_idle()
    qtbot.waitUntil(lambda: len([t for rows in store.tags.for_images(store.images.ids()).values()
                                 for t in rows if t.source == "model rule"]) == result.count,
                    timeout=10000)
    assert first.name == panel.threshold_table.item(0, 0).text()


def test_rounds_plot_and_rollback(qtbot, panel):
    from engine.store.versions import active_run

    assert [r.model_version for r in panel.rounds] == ["student-1", "student-2"]
    assert [r.person_tags for r in panel.rounds] == [0, 1]
    x, y = panel.round_curves["mAP"].getData()
    assert x.tolist() == [1.0, 2.0] and all(0 <= v <= 1 for v in y)
    assert panel.tag_bars is not None
    assert panel.version_table.item(1, 7).text() == "✓"
    assert panel.version_table.item(1, 6).text() == "student-1"   # warm-started
    panel.version_table.selectRow(0)
    assert panel.rollback_button.isEnabled()
    with qtbot.waitSignal(panel.rolled_back, timeout=10000):
        panel.rollback_selected()
    assert active_run(panel.workers.store, "student").model_version == "student-1"
    qtbot.waitUntil(lambda: panel.version_table.item(0, 7).text() == "✓", timeout=10000)
    assert not panel.rollback_button.isEnabled() or panel.version_table.item(1, 7).text() == ""
