"""The same bytes under different names: a hint on the gallery cell, its tooltip, and a filter."""

from __future__ import annotations

import shutil

from engine.store import queries as gq
from tests.gui.projects import register


def test_duplicates_are_hinted_and_filtered(qtbot, window, project):
    folder, store = project["folder"], project["store"]
    copy = folder / "copy_of_img_002.jpg"
    shutil.copy(folder / "img_002.jpg", copy)
    (copy_id,) = register(store, folder, [copy])
    original = project["ids"][2]
    assert gq.query_ids(store, gq.GalleryFilter(duplicates=True)) == [original, copy_id]
    rows = gq.gallery_rows(store, [original, copy_id, project["ids"][3]])
    assert [rows[i].copies for i in (original, copy_id, project["ids"][3])] == [2, 2, 1]

    window.state.notify_images_changed()
    qtbot.waitUntil(lambda: window.model.rowCount() == 13, timeout=20000)
    window.filters.set_state("duplicates")
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=20000)
    assert window.filters.count_label.text() == "2 shown"
    qtbot.waitUntil(lambda: window.model.row_facts(0) is not None, timeout=20000)
    tip = window.model.data(window.model.index(0, 0), 3)          # Qt.ToolTipRole
    assert "Duplicate: 2 files" in tip
    window.gallery.viewport().repaint()                           # the badge paints
