"""Driving the real window: tag by keyboard, accept/reject suggestions, undo/redo, bulk edits,
history revert. Every check reads the database through a separate store connection."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, Qt

from engine.store import TagEdit


def tag_state(project, image_id, name):
    """'positive' / 'negative' / None for (image, class) as stored."""
    class_id = project["classes"][name]
    for tag in project["store"].tags.for_image(image_id):
        if tag.class_id == class_id:
            return "positive" if tag.positive else "negative"
    return None


def wait_state(qtbot, project, image_id, name, expected):
    qtbot.waitUntil(lambda: tag_state(project, image_id, name) == expected, timeout=20000)


def test_accept_and_reject_suggestions_by_keyboard(qtbot, window, project):
    first = project["ids"][0]
    assert [s.class_id for s in window.tag_panel.shown] == [project["classes"]["dog"],
                                                           project["classes"]["car"]]
    assert tag_state(project, first, "dog") is None        # a suggestion is not a tag
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)
    wait_state(qtbot, project, first, "dog", "positive")
    tag = [t for t in project["store"].tags.for_image(first)
           if t.class_id == project["classes"]["dog"]][0]
    assert tag.source == "person" and tag.reviewed
    qtbot.waitUntil(lambda: len(window.tag_panel.shown) == 1, timeout=20000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Delete)       # reject the outlined one: car
    wait_state(qtbot, project, first, "car", "negative")
    qtbot.waitUntil(lambda: window.tag_panel.shown == [], timeout=20000)
    # the gallery badge follows: no pending suggestion left on the first image
    qtbot.waitUntil(lambda: window.model.cached_row(first).pending == 0, timeout=20000)

    # J moves on; Space accepts every shown suggestion of the next image
    qtbot.keyClick(window.gallery, Qt.Key.Key_J)
    second = project["ids"][1]
    qtbot.waitUntil(lambda: window.tag_panel.detail is not None
                    and window.tag_panel.detail.image_id == second, timeout=20000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Space)
    wait_state(qtbot, project, second, "dog", "positive")
    wait_state(qtbot, project, second, "car", "positive")
    assert tag_state(project, second, "tree") is None        # below threshold: not shown
    qtbot.keyClick(window.gallery, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: window.gallery.current_image_id() == first, timeout=20000)


def test_class_key_and_typed_tag(qtbot, window, project):
    store, first = project["store"], project["ids"][0]
    store.classes.update(project["classes"]["tree"], shortcut="e")
    window.state.reload_classes()
    qtbot.waitUntil(lambda: any(a.text() == "Toggle tree" for a in window._class_actions),
                    timeout=20000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_E)
    wait_state(qtbot, project, first, "tree", "positive")
    qtbot.keyClick(window.gallery, Qt.Key.Key_E)            # the same key toggles it off
    wait_state(qtbot, project, first, "tree", None)

    qtbot.keyClick(window.gallery, Qt.Key.Key_T)            # focus the add-tag field
    assert window.tag_panel.add_field.hasFocus()
    qtbot.keyClicks(window.tag_panel.add_field, "Boat")      # a new class
    qtbot.keyClick(window.tag_panel.add_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Boat" in store.classes.names(), timeout=20000)
    boat = store.classes.get("Boat").id
    qtbot.waitUntil(lambda: any(t.class_id == boat for t in store.tags.for_image(first)),
                    timeout=20000)
    qtbot.waitUntil(lambda: window.state.class_by_name("boat") is not None, timeout=20000)


def test_undo_redo(qtbot, window, project):
    first = project["ids"][0]
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)
    wait_state(qtbot, project, first, "dog", "positive")
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_state(qtbot, project, first, "dog", None)
    qtbot.waitUntil(lambda: len(window.tag_panel.shown) == 2, timeout=20000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    wait_state(qtbot, project, first, "dog", "positive")
    # undoing a removal brings back the import tag as it was
    window.tag_panel.remove_tag(project["classes"]["cat"])
    wait_state(qtbot, project, first, "cat", None)
    window.state.undo_stack.undo()
    wait_state(qtbot, project, first, "cat", "positive")
    history = project["store"].tags.history(image_id=first)
    assert [(h.old_state, h.new_state) for h in history][-2:] == [("positive", None),
                                                                (None, "positive")]


def test_bulk_edit_is_one_undo_step(qtbot, window, project):
    ids = project["ids"]
    window.gallery.setFocus()
    qtbot.keyClick(window.gallery, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.tag_panel.is_bulk(), timeout=20000)
    assert len(window.selected_image_ids()) == 12
    window.tag_panel.add_tag("tree")
    qtbot.waitUntil(lambda: all(tag_state(project, i, "tree") == "positive" for i in ids),
                    timeout=20000)
    qtbot.waitUntil(lambda: window.tag_panel._selection_counts.get(
        project["classes"]["tree"]) == 12, timeout=20000)
    window.tag_panel.remove_tag(project["classes"]["cat"])
    wait_state(qtbot, project, ids[0], "cat", None)
    # a macro of both bulk edits undoes in one step; class keys on a selection are one step too
    stack = window.state.undo_stack
    assert stack.count() == 2
    stack.undo()
    wait_state(qtbot, project, ids[0], "cat", "positive")
    stack.undo()
    qtbot.waitUntil(lambda: all(tag_state(project, i, "tree") is None for i in ids), timeout=20000)
    stack.beginMacro("two edits")
    window.tag_panel.add_tag("car")
    window.tag_panel.add_tag("dog")
    stack.endMacro()
    qtbot.waitUntil(lambda: all(tag_state(project, i, "dog") == "positive" for i in ids),
                    timeout=20000)
    stack.undo()
    qtbot.waitUntil(lambda: all(tag_state(project, i, "dog") is None and
                                tag_state(project, i, "car") is None for i in ids), timeout=20000)


def test_history_view_revert(qtbot, window, project):
    first = project["ids"][0]
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)
    wait_state(qtbot, project, first, "dog", "positive")
    tree = window.history.tree
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 2, timeout=20000)
    assert tree.topLevelItem(0).text(1) == "dog" and tree.topLevelItem(0).text(3) == "person"
    tree.topLevelItem(0).setSelected(True)
    window.history.revert_button.click()
    wait_state(qtbot, project, first, "dog", None)
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 3, timeout=20000)
    window.state.undo_stack.undo()                          # the revert is undoable
    wait_state(qtbot, project, first, "dog", "positive")


def test_edits_from_elsewhere_show_after_refresh(qtbot, window, project):
    project["store"].tags.apply([TagEdit(project["ids"][0], project["classes"]["dog"],
                                         "negative")])
    qtbot.keyClick(window.gallery, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: len(window.tag_panel.shown) == 1, timeout=20000)


def test_refresh_and_new_models_keep_the_image_and_the_selection(qtbot, window, project):
    """F5, or a job that changed the models, used to send the person back to the first image."""
    ids = project["ids"]
    window.gallery.select_image(ids[5])
    qtbot.waitUntil(lambda: window.gallery.current_image_id() == ids[5], timeout=5000)
    flags = QItemSelectionModel.SelectionFlag
    model = window.model
    for row in (model.row_of(ids[6]), model.row_of(ids[7])):
        window.gallery.selectionModel().select(model.index(row, 0), flags.Select)
    before = window.gallery.selected_ids()
    assert set(before) == {ids[5], ids[6], ids[7]}
    with qtbot.waitSignal(model.query_finished, timeout=20000):
        qtbot.keyClick(window.gallery, Qt.Key.Key_F5)
    assert window.gallery.current_image_id() == ids[5]
    assert window.gallery.selected_ids() == before
    with qtbot.waitSignal(model.query_finished, timeout=20000):
        window.state.models_changed()                  # what a finished round does
    assert window.gallery.current_image_id() == ids[5]
    assert window.gallery.selected_ids() == before
    qtbot.waitUntil(lambda: window.viewer.detail is not None
                    and window.viewer.detail.image_id == ids[5], timeout=20000)
    assert window.tag_panel.is_bulk()                # still editing the three selected
