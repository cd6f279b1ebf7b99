"""The search box as a person types in it: mistakes are named in the box (red outline, tooltip,
the count's place) instead of "0 shown"; OR, negation and the folder's name answer."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel


def type_search(qtbot, window, text):
    search = window.filters.search
    search.setFocus()
    search.selectAll()
    qtbot.keyClicks(search, text) if text else search.clear()
    qtbot.keyClick(search, Qt.Key.Key_Return)


def test_search_mistakes_are_shown_in_the_box(qtbot, window, project):
    filters = window.filters
    for text, words in (("foo:bar", "Unknown field 'foo:'"),
                        ("tag:nosuchclass", "No class is named 'nosuchclass'"),
                        ('tag:"red car', "not closed"),
                        ("img_001 OR", "ends too early"),
                        ("(img_001", "'(' is not closed")):
        type_search(qtbot, window, text)
        assert words in filters.search.toolTip(), text
        assert "#e53935" in filters.search.styleSheet()
        assert words in filters.count_label.text()
        assert "0 shown" not in filters.count_label.text()
        assert words in window.status.currentMessage()        # whole, where there is room
        assert window.model.rowCount() == 12                  # the gallery keeps what it showed

    type_search(qtbot, window, "img_001 OR img_002")
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=20000)
    assert filters.search.styleSheet() == ""
    assert filters.count_label.text() == "2 shown"
    assert "Unknown" not in filters.search.toolTip()


def test_negation_and_the_folders_own_name(qtbot, window, project):
    type_search(qtbot, window, "-path:img_00")
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=20000)     # img_010, img_011
    type_search(qtbot, window, "path:photos -(tag:cat OR img_011)")
    qtbot.waitUntil(lambda: window.model.rowCount() == 10, timeout=20000)
    type_search(qtbot, window, "")
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=20000)


def test_shortcut_sheet_documents_the_search_language(qtbot, window):
    sheet = window.show_shortcuts()
    text = sheet.findChild(QLabel).text()
    assert "Search language" in text
    for example in ("tag:cat", "a OR b", "-tag:cat", "(a OR b) -c", "path:holiday/2023"):
        assert example in text
    sheet.close()
