"""Class names with control characters are refused in the GUI too (issue 15, item 9): the classes
dialog (add, rename) and the tag panel's add field say why at once, ask nothing, push no undo
step and create nothing."""

from __future__ import annotations

import pytest

BAD = ["bad\x07name", "nul\x00name", "esc\x1bname"]


@pytest.mark.parametrize("bad", BAD)
def test_classes_dialog_refuses_control_characters(qtbot, window, project, monkeypatch, errors,
                                                   bad):
    from app import dialogs

    window.show_classes()
    dialog = window._classes_dialog
    names, depth = project["store"].classes.names(), window.state.undo_stack.count()
    monkeypatch.setattr(dialogs, "get_text", lambda *args, **kwargs: bad)
    dialog.add_class()
    qtbot.wait(300)
    assert len(errors) == 1 and "control characters" in str(errors.pop())
    row = dialog._ids.index(project["classes"]["dog"])
    dialog.table.item(row, 1).setText(bad)
    qtbot.wait(300)
    assert len(errors) == 1 and "control characters" in str(errors.pop())
    assert dialog.table.item(row, 1).text() == "dog"
    assert window.state.undo_stack.count() == depth
    assert project["store"].classes.names() == names
    dialog.close()


@pytest.mark.parametrize("bad", BAD)
def test_tag_panel_refuses_control_characters(qtbot, window, project, monkeypatch, errors, bad):
    from app import dialogs

    asked: list[tuple] = []
    monkeypatch.setattr(dialogs, "ask", lambda *args, **kwargs: asked.append(args) or True)
    names, depth = project["store"].classes.names(), window.state.undo_stack.count()
    window.tag_panel.add_tag(bad)
    qtbot.wait(300)
    assert len(errors) == 1 and "control characters" in str(errors.pop())
    assert asked == []                                   # no "create the class?" question first
    assert window.state.undo_stack.count() == depth
    assert project["store"].classes.names() == names
