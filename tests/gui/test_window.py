"""Driving the real window: projects, folders (menu and drag-and-drop), filters, the classes
dialog, the shortcut sheet, persistence and error dialogs."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QLabel

from engine.errors import UserError
from engine.store import Store
from tests.gui.conftest import open_window
from tests.gui.projects import write_images


def test_add_folder_by_drop_and_rescan(qtbot, tmp_path, settings, errors):
    window = open_window(qtbot, tmp_path / "empty-project", settings)
    qtbot.waitUntil(lambda: window.project_dir is not None, timeout=30000)
    assert window.model.rowCount() == 0
    folder = tmp_path / "holiday"
    write_images(folder, 5)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    qtbot.waitUntil(lambda: window.model.rowCount() == 6, timeout=15000)
    qtbot.waitUntil(lambda: window.state.counts.images == 6, timeout=20000)
    assert window.state.counts.unreadable == 1
    assert "6 images" in window.status.counts_label.text()
    # the unreadable file is shown with its reason
    window.filters.set_state("unreadable")
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=20000)
    qtbot.waitUntil(lambda: window.tag_panel.detail is not None, timeout=20000)
    assert "Unreadable" in window.tag_panel.title.text()
    # adding the same folder again by the menu path is idempotent
    window.add_folder(str(folder))
    qtbot.waitUntil(lambda: "unchanged" in window.status.currentMessage(), timeout=30000)
    assert window.state.counts.images == 6
    window.close()
    assert errors == []


def test_user_errors_are_dialogs_not_tracebacks(qtbot, window, errors, tmp_path):
    window.add_folder(str(tmp_path / "does-not-exist"))
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=30000)
    assert isinstance(errors[0], UserError)
    errors.clear()


def test_filters_and_search(qtbot, window, project):
    ids = project["ids"]
    filters = window.filters
    filters.set_state("untagged")
    qtbot.waitUntil(lambda: window.model.rowCount() == 11, timeout=20000)
    assert window.model.ids() == ids[1:]
    filters.set_state(None)
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=20000)
    qtbot.keyClicks(filters.search, "img_003")             # debounced: one query at the end
    qtbot.waitUntil(lambda: window.model.ids() == [ids[3]], timeout=20000)
    assert filters.count_label.text() == "1 shown"
    filters.search.clear()
    filters.set_class(project["classes"]["cat"])
    qtbot.waitUntil(lambda: window.model.ids() == [ids[0]], timeout=20000)
    filters.class_mode.setCurrentIndex(filters.class_mode.findData("suggested"))
    filters.set_class(project["classes"]["dog"])
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=20000)
    filters.set_class(None)
    filters.sort_combo.setCurrentIndex(filters.sort_combo.findData("confidence"))
    filters.descending.setChecked(True)
    qtbot.waitUntil(lambda: window.model.ids() == ids[::-1], timeout=20000)
    filters.use_confidence.setChecked(True)
    filters.min_conf.setValue(0.85)
    qtbot.waitUntil(lambda: window.model.rowCount() == 6, timeout=20000)


def test_classes_dialog_threshold_count_and_rename(qtbot, window, project, monkeypatch, errors):
    window.show_classes()
    dialog = window._classes_dialog
    dog = project["classes"]["dog"]
    qtbot.waitUntil(lambda: dialog.count_text(dog) == "12", timeout=20000)
    dialog._spins[dog].setValue(0.86)                     # live count while the value moves
    qtbot.waitUntil(lambda: dialog.count_text(dog) == "5", timeout=20000)
    dialog.flush()
    qtbot.waitUntil(lambda: project["store"].classes.get("dog").threshold == 0.86, timeout=20000)
    row = dialog._ids.index(dog)
    dialog.table.item(row, 1).setText("puppy")
    qtbot.waitUntil(lambda: "puppy" in project["store"].classes.names(), timeout=20000)
    window.state.undo_stack.undo()
    qtbot.waitUntil(lambda: "dog" in project["store"].classes.names(), timeout=20000)
    qtbot.waitUntil(lambda: window.state.class_by_name("dog") is not None, timeout=20000)
    dialog.table.item(row, 2).setText("1")               # reserved: refused with a message
    assert project["store"].classes.get("dog").shortcut is None
    assert "taken by the review shortcuts" in str(errors.pop())
    assert window.state.undo_stack.count() == 2
    dialog.select_class(project["classes"]["tree"])
    dialog.delete_selected()                              # confirmed by the `errors` fixture
    qtbot.waitUntil(lambda: "tree" not in project["store"].classes.names(), timeout=20000)
    qtbot.waitUntil(lambda: project["classes"]["tree"] not in dialog._ids, timeout=20000)
    from app import dialogs

    monkeypatch.setattr(dialogs, "get_item", lambda *args: "dog")
    dialog.select_class(project["classes"]["car"])
    dialog.merge_selected()
    qtbot.waitUntil(lambda: "car" not in project["store"].classes.names() or bool(errors), timeout=20000)
    assert errors == []
    qtbot.waitUntil(lambda: project["classes"]["car"] not in window.state.classes, timeout=20000)
    dialog.close()


def test_shortcut_sheet_and_regions(qtbot, window, project):
    qtbot.keyClick(window.gallery, Qt.Key.Key_Question)
    sheets = [w for w in QApplication.topLevelWidgets()
              if w.objectName() == "shortcutSheet" and w.isVisible()]
    assert sheets
    text = sheets[0].findChild(QLabel).text()
    assert "Accept All Shown" in text or "Accept every suggestion" in text
    sheets[0].close()
    viewer = window.viewer
    qtbot.waitUntil(lambda: len(viewer.view.regions()) == 2, timeout=20000)
    visible = [r for r in viewer.view.regions() if r.isVisible()]
    assert len(visible) == 2                               # min score 0.2 by default
    viewer.slider.setValue(50)
    assert [r.class_id for r in viewer.view.regions() if r.isVisible()] == [
        project["classes"]["dog"]]
    viewer.toggle_class(project["classes"]["dog"], False)
    assert not any(r.isVisible() for r in viewer.view.regions())
    viewer.toggle_class(project["classes"]["dog"], True)
    window.tag_panel.hovered.emit(project["classes"]["car"])
    car = [r for r in viewer.view.regions() if r.class_id == project["classes"]["car"]][0]
    dog = [r for r in viewer.view.regions() if r.class_id == project["classes"]["dog"]][0]
    assert car.pen().width() > dog.pen().width() and dog.opacity() < 1
    window.tag_panel.hovered.emit(-1)
    assert dog.opacity() == 1


def test_settings_persist(qtbot, project, settings, errors):
    window = open_window(qtbot, project["project"], settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=30000)
    window.gallery.select_row(5)
    window.viewer.slider.setValue(35)
    window.filters.sort_combo.setCurrentIndex(window.filters.sort_combo.findData("name"))
    window.resize(1000, 700)
    window.close()
    again = open_window(qtbot, None, settings)            # the last project opens by itself
    qtbot.waitUntil(lambda: again.model.rowCount() == 12, timeout=30000)
    qtbot.waitUntil(lambda: again.gallery.current_image_id() == project["ids"][5], timeout=20000)
    assert again.viewer.slider.value() == 35
    assert again.filters.sort_combo.currentData() == "name"
    assert str(project["project"]) in again.recent_projects()[0]
    again.close()
    assert errors == []


def test_first_launch_offers_demo(qtbot, tmp_path, settings, errors, monkeypatch):
    from app import project_jobs

    monkeypatch.setattr(project_jobs, "DEMO_IMAGES", 6)
    from app.main_window import MainWindow

    window = MainWindow(project_dir=tmp_path / "fresh", settings=settings, offer_demo=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.model.rowCount() == 6, timeout=60000)
    qtbot.waitUntil(lambda: len(window.state.classes) >= 3, timeout=20000)
    store = Store.open(tmp_path / "fresh")
    assert store.images.count() == 6 and store.tags.tagged_image_count() > 0
    store.close()
    window.close()
    assert errors == []


def test_switch_project_and_fall_back_after_a_bad_one(qtbot, window, project, tmp_path, errors):
    other = tmp_path / "other-project"
    window.open_project(other)
    qtbot.waitUntil(lambda: window.project_dir == other, timeout=30000)
    qtbot.waitUntil(lambda: window.state.counts.images == 0, timeout=20000)
    assert window.model.rowCount() == 0 and window.windowTitle().startswith("other-project")
    recent = window.recent_projects()
    assert recent[0] == str(other) and recent[1] == str(project["project"])
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    window.open_project(not_a_folder)                  # cannot be a project: a clear error
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=30000)
    assert "Cannot create the project folder" in str(errors.pop())
    qtbot.waitUntil(lambda: window.project_dir == other, timeout=30000)   # back where it was
    window.actions.recent_menu.actions()[1].trigger()  # the Recent menu reopens the first one
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=30000)


def test_a_window_gone_before_its_deferred_layout_raises_nothing(qtbot, project, settings, errors):
    """A window closed and destroyed before the event loop runs its queued first-start layout
    (a busy machine, a quick quit): the queued calls go with it instead of raising in the loop."""
    import shiboken6

    from app.main_window import MainWindow

    window = MainWindow(project_dir=project["project"], settings=settings, offer_demo=False)
    window.show()
    window._ensure_extension_docks()                 # queues the docks' default sizes as well
    window.close()
    shiboken6.delete(window)
    qtbot.wait(100)                                  # pytest-qt fails on any exception in the loop
    assert errors == []
