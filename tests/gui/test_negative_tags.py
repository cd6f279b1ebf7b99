"""An exhaustive import gives every image a "not" per class it lacks: the tag panel shows the
positives and folds the "not" chips into one button; opened, they stay open on the next image,
and closed again they fold back."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

from tests.gui.conftest import open_window
from tests.gui.test_mark_complete import chip_texts

CLASSES = ["cat", "dog", "car", "tree", "boat", "bird"]


def _exhaustive_project(tmp_path):
    from engine.exchange.coco import import_coco
    from engine.store import Store
    from tests.gui.projects import write_images

    folder = tmp_path / "coco"
    write_images(folder, 2)
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "img_000.jpg"}, {"id": 2, "file_name": "img_001.jpg"}],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 1, 9, 9]}]}))
    store = Store.open(tmp_path / "project")
    import_coco(store, tmp_path / "c.json", folder)            # exhaustive: 5 "not"s per image
    store.close()
    return tmp_path / "project"


def _toggle(window) -> QToolButton | None:
    found = [b for b in window.tag_panel.findChildren(QToolButton, "negativesToggle")
             if b.isVisible()]
    return found[0] if found else None


def test_many_nots_fold_into_one_button_that_stays_open(qtbot, tmp_path, settings, errors):
    window = open_window(qtbot, _exhaustive_project(tmp_path), settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=30000)
    qtbot.waitUntil(lambda: chip_texts(window) == ["cat"], timeout=20000)
    assert _toggle(window).text() == "Show 5 “not” tags"

    qtbot.mouseClick(_toggle(window), Qt.MouseButton.LeftButton)
    nots = ["not bird", "not boat", "not car", "not tree"]
    qtbot.waitUntil(lambda: chip_texts(window) == sorted(["cat", *nots, "not dog"]), timeout=20000)
    assert _toggle(window).text() == "Hide the 5 “not” tags"

    window.gallery.setFocus()
    qtbot.keyClick(window.gallery, Qt.Key.Key_J)                # the next image: still open
    qtbot.waitUntil(lambda: chip_texts(window) == sorted(["dog", *nots, "not cat"]), timeout=20000)

    qtbot.mouseClick(_toggle(window), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: chip_texts(window) == ["dog"], timeout=20000)
    window.close()
    assert errors == []
