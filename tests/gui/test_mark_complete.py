"""Review > Mark Image Complete (Ctrl+Return): every class the image has no tag for becomes a
"not", the tag panel shows it, Ctrl+Z puts the unknowns back, and a restart shows what was left;
the COCO import dialog's "Partial labels" box keeps the categories an image lacks unknown."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.elided import ElidedLabel
from app.panels.tag_panel import TagChip
from tests.gui.conftest import open_window
from tests.gui.test_review import tag_state


def chip_texts(window) -> list[str]:
    """The tag chips the person sees, e.g. ['cat', 'not car', ...]."""
    return sorted(chip.findChild(ElidedLabel).text()
                  for chip in window.tag_panel.findChildren(TagChip) if chip.isVisible())


def states(project, image_id) -> dict[str, str | None]:
    return {name: tag_state(project, image_id, name) for name in project["classes"]}


def test_mark_complete_undo_and_restart(qtbot, window, project, settings, errors):
    first, second = project["ids"][0], project["ids"][1]
    unknowns = {"cat": "positive", "dog": None, "car": None, "tree": None}
    assert states(project, first) == unknowns
    qtbot.keyClick(window.gallery, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    complete = {"cat": "positive", "dog": "negative", "car": "negative", "tree": "negative"}
    qtbot.waitUntil(lambda: states(project, first) == complete, timeout=20000)
    qtbot.waitUntil(lambda: chip_texts(window) == ["cat", "not car", "not dog", "not tree"],
                    timeout=20000)
    assert states(project, second) == dict.fromkeys(project["classes"])   # only the current one

    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: states(project, first) == unknowns, timeout=20000)
    qtbot.waitUntil(lambda: chip_texts(window) == ["cat"], timeout=20000)

    window.gallery.setFocus()
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier |
                   Qt.KeyboardModifier.ShiftModifier)                      # redo
    qtbot.waitUntil(lambda: states(project, first) == complete, timeout=20000)
    window.close()

    again = open_window(qtbot, project["project"], settings)
    qtbot.waitUntil(lambda: again.model.rowCount() == 12, timeout=30000)
    qtbot.waitUntil(lambda: again.tag_panel.detail is not None
                    and again.tag_panel.detail.image_id == first, timeout=30000)
    qtbot.waitUntil(lambda: chip_texts(again) == ["cat", "not car", "not dog", "not tree"],
                    timeout=20000)
    again.close()
    assert errors == []


def test_coco_import_dialog_partial_box(qtbot, tmp_path, settings, errors):
    import json

    from engine.intake import scan_folder
    from engine.store import Store
    from tests.gui.projects import write_images

    folder = tmp_path / "coco"
    write_images(folder, 2)
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "img_000.jpg"}, {"id": 2, "file_name": "img_001.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]}]}))
    store = Store.open(tmp_path / "project")
    scan_folder(store, folder)
    store.close()
    window = open_window(qtbot, tmp_path / "project", settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=30000)   # the project is open
    file_menu = window.menuBar().actions()[0].menu()
    next(a for a in file_menu.actions() if a.text() == "Import COCO…").trigger()
    dialog = window._exchange_dialogs["import-coco"]
    assert not dialog.partial.isChecked() and dialog.partial.isVisible()
    dialog.path.setText(str(tmp_path / "c.json"))
    dialog.images.setText(str(folder))
    dialog.partial.setChecked(True)
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.last_result is not None and not dialog.jobs.busy,
                    timeout=30000)
    store = Store.open(tmp_path / "project")
    matrix = store.tags.label_matrix()
    assert matrix.known.tolist() == [[True, False]]       # the cat only: dog stays unknown
    store.close()
    window.close()
    assert errors == []
