"""A person reviewing without the mouse: the add-tag field gives the keys back, the outline moves
between suggestions, auto-advance, an unknown name asks first, Space and the confidence floor, undo
from the classes dialog, deleting a class and the undo history."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.gui.test_review import tag_state, wait_state


def current_detail(window):
    return window.tag_panel.detail.image_id if window.tag_panel.detail else None


def test_completion_adds_clears_and_gives_keys_back(qtbot, window, project):
    first, store = project["ids"][0], project["store"]
    panel = window.tag_panel
    window.gallery.setFocus()
    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    assert panel.add_field.hasFocus()
    qtbot.keyClicks(panel.add_field, "tre")
    completer = panel.add_field.completer()
    qtbot.waitUntil(lambda: completer.popup().isVisible(), timeout=5000)
    popup = completer.popup()
    popup.setCurrentIndex(completer.completionModel().index(0, 0))
    qtbot.keyClick(popup, Qt.Key.Key_Return)          # choose "tree" from the list
    wait_state(qtbot, project, first, "tree", "positive")
    qtbot.waitUntil(lambda: panel.add_field.text() == "", timeout=5000)
    assert window.gallery.hasFocus()
    # the review keys work again: J goes to the next image instead of typing "j"
    qtbot.keyClick(window.gallery, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: current_detail(window) == project["ids"][1], timeout=20000)
    assert panel.add_field.text() == ""
    assert "trej" not in store.classes.names()


def test_enter_and_escape_give_the_keys_back(qtbot, window, project):
    first = project["ids"][0]
    panel = window.tag_panel
    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    qtbot.keyClicks(panel.add_field, "car")
    panel.add_field.completer().popup().hide()
    qtbot.keyClick(panel.add_field, Qt.Key.Key_Return)
    wait_state(qtbot, project, first, "car", "positive")
    assert panel.add_field.text() == "" and window.gallery.hasFocus()

    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    qtbot.keyClicks(panel.add_field, "half-typed")
    panel.add_field.completer().popup().hide()
    qtbot.keyClick(panel.add_field, Qt.Key.Key_Escape)
    assert panel.add_field.text() == ""
    assert window.gallery.hasFocus()


def test_unknown_name_asks_before_creating_a_class(qtbot, window, project, monkeypatch):
    from app import dialogs

    first, store = project["ids"][0], project["store"]
    questions = []
    monkeypatch.setattr(dialogs, "ask", lambda parent, title, text, danger=False:
                        questions.append(text) or False)
    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    qtbot.keyClicks(window.tag_panel.add_field, "dgo")          # a typo
    qtbot.keyClick(window.tag_panel.add_field, Qt.Key.Key_Return)
    assert len(questions) == 1 and "'dgo'" in questions[0]
    window.workers.db(lambda s: None)
    qtbot.wait(300)
    assert "dgo" not in store.classes.names()                   # said no: nothing created

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: True)  # Enter on the default Yes
    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    qtbot.keyClicks(window.tag_panel.add_field, "Boat")
    qtbot.keyClick(window.tag_panel.add_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Boat" in store.classes.names(), timeout=20000)
    boat = store.classes.get("Boat").id
    qtbot.waitUntil(lambda: any(t.class_id == boat for t in store.tags.for_image(first)),
                    timeout=20000)


def test_outline_moves_between_suggestions_and_delete_rejects_it(qtbot, window, project):
    first, classes = project["ids"][0], project["classes"]
    panel = window.tag_panel
    assert panel.current_class == classes["dog"]
    qtbot.keyClick(window.gallery, Qt.Key.Key_BracketRight)      # ] : outline suggestion 2
    assert panel.current_class == classes["car"]
    qtbot.keyClick(window.gallery, Qt.Key.Key_BracketRight)      # wraps round to 1
    assert panel.current_class == classes["dog"]
    qtbot.keyClick(window.gallery, Qt.Key.Key_BracketLeft)       # [ : back to 2
    assert panel.current_class == classes["car"]
    qtbot.keyClick(window.gallery, Qt.Key.Key_Delete)            # reject suggestion 2
    wait_state(qtbot, project, first, "car", "negative")
    assert tag_state(project, first, "dog") is None
    qtbot.waitUntil(lambda: len(panel.shown) == 1, timeout=20000)
    assert panel.current_class == classes["dog"]                 # the outline stays in the list
    sheet = window.show_shortcuts()
    assert "Move the outline to the next suggestion" in sheet.findChild(
        type(window.tag_panel.title)).text()
    sheet.close()


def test_auto_advance_after_the_last_decision(qtbot, window, project):
    first, second = project["ids"][:2]
    window.actions.auto_advance.setChecked(True)
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)                  # dog: one left, stay
    wait_state(qtbot, project, first, "dog", "positive")
    qtbot.waitUntil(lambda: len(window.tag_panel.shown) == 1, timeout=20000)
    assert window.gallery.current_image_id() == first
    qtbot.keyClick(window.gallery, Qt.Key.Key_Delete)             # car rejected: all decided
    wait_state(qtbot, project, first, "car", "negative")
    qtbot.waitUntil(lambda: window.gallery.current_image_id() == second, timeout=20000)
    assert window.settings.value("review/auto_advance") in ("true", True)

    window.actions.auto_advance.setChecked(False)
    qtbot.waitUntil(lambda: current_detail(window) == second, timeout=20000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Space)
    wait_state(qtbot, project, second, "car", "positive")
    qtbot.waitUntil(lambda: window.tag_panel.shown == [], timeout=20000)
    qtbot.wait(200)
    assert window.gallery.current_image_id() == second


def test_space_never_accepts_below_the_floor_silently(qtbot, window, project):
    from app.panels.tag_panel import ACCEPT_FLOOR

    first, classes, store = project["ids"][0], project["classes"], project["store"]
    store.classes.update(classes["tree"], threshold=0.01)          # a near-zero threshold
    store.suggestions.replace(project["student"], [first],
                              [(first, classes["dog"], 0.9), (first, classes["tree"], 0.012)])
    window.refresh()
    panel = window.tag_panel
    qtbot.waitUntil(lambda: [s.class_id for s in panel.shown] == [classes["dog"], classes["tree"]],
                    timeout=20000)
    assert 0.012 < ACCEPT_FLOOR
    texts = [label.text() for label in panel.findChildren(type(panel.title))]
    assert "0.012" in texts, str(texts)                             # not "0.01" or "0.00"
    qtbot.keyClick(window.gallery, Qt.Key.Key_Space)
    wait_state(qtbot, project, first, "dog", "positive")
    assert panel.notice.isVisible()
    assert "tree (0.012)" in panel.notice.text()
    qtbot.waitUntil(lambda: [s.class_id for s in panel.shown] == [classes["tree"]], timeout=20000)
    assert tag_state(project, first, "tree") is None
    qtbot.keyClick(window.gallery, Qt.Key.Key_1)                  # the person's explicit choice
    wait_state(qtbot, project, first, "tree", "positive")


def test_undo_and_redo_with_the_classes_dialog_focused(qtbot, window, project):
    store, dog = project["store"], project["classes"]["dog"]
    window.show_classes()
    dialog = window._classes_dialog
    qtbot.waitUntil(lambda: dialog.isVisible(), timeout=5000)
    dialog.table.item(dialog._ids.index(dog), 1).setText("hound")     # a rename
    qtbot.waitUntil(lambda: "hound" in store.classes.names(), timeout=20000)
    dialog.activateWindow()
    dialog.table.setFocus()
    qtbot.keyClick(dialog.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "dog" in store.classes.names(), timeout=20000)
    qtbot.keyClick(dialog.table, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: "hound" in store.classes.names(), timeout=20000)
    dialog.close()


def test_deleting_a_class_clears_the_undo_history(qtbot, window, project, monkeypatch):
    from app import dialogs

    store = project["store"]
    questions = []
    monkeypatch.setattr(dialogs, "ask", lambda parent, title, text, danger=False:
                        questions.append(text) or True)
    qtbot.keyClick(window.gallery, Qt.Key.Key_T)
    qtbot.keyClicks(window.tag_panel.add_field, "Boat")
    qtbot.keyClick(window.tag_panel.add_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.state.class_by_name("boat") is not None, timeout=20000)
    window.state.undo_stack.undo()                                 # the tag goes; class stays
    window.show_classes()
    dialog = window._classes_dialog
    qtbot.waitUntil(lambda: store.classes.get("Boat").id in dialog._ids, timeout=20000)
    dialog.select_class(store.classes.get("Boat").id)
    dialog.delete_selected()
    assert "clears the undo history" in questions[-1]
    qtbot.waitUntil(lambda: "Boat" not in store.classes.names(), timeout=20000)
    qtbot.waitUntil(lambda: not window.state.undo_stack.canRedo(), timeout=20000)
    assert not window.state.undo_stack.canUndo()
    window.state.undo_stack.redo()                                 # nothing to bring it back
    qtbot.wait(300)
    assert "Boat" not in store.classes.names()
    dialog.close()
