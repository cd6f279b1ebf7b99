"""The main window's actions and menus, grouped (File, Edit, Review, View, Help). Every keyboard
shortcut of the window is an action here, so the shortcut sheet lists them all."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from app.actions import new_action
from app.icons import icon
from app.style import THEMES, switch_theme


class WindowActions:
    """Holds the actions; `groups` maps a menu name to its actions (for the shortcut sheet)."""

    def __init__(self, window) -> None:
        self.window = window
        self.groups: dict[str, list] = {}
        self.recent_menu: QMenu | None = None

    def group(self, name: str, *actions) -> None:
        self.groups.setdefault(name, []).extend(actions)

    def refresh_recent(self) -> None:
        menu = self.recent_menu
        if menu is None:
            return
        menu.clear()
        recent = self.window.recent_projects()
        for path in recent:
            action = menu.addAction(Path(path).name or path)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(partial(self.window.open_project, path))
        menu.setEnabled(bool(recent))

    def class_key_actions(self, classes) -> list:
        """Window-wide actions for the classes' shortcut keys (toggle the tag on the selection)."""
        actions = []
        for info in classes:
            if not info.shortcut:
                continue
            action = new_action(self.window, f"Toggle {info.name}",
                                partial(self.window.toggle_class, info.class_id),
                                info.shortcut.upper(), tip=f"Toggle the tag {info.name} on the "
                                                           "selected images")
            actions.append(action)
        return actions


def build_menus(window) -> WindowActions:
    acts = WindowActions(window)
    bar = window.menuBar()
    undo_stack = window.state.undo_stack

    # File
    file_menu = bar.addMenu("&File")
    new_project = new_action(window, "&New Project…", window.new_project, "Ctrl+Shift+N",
                             "Create a project in an empty folder")
    open_project = new_action(window, "&Open Project…", window.choose_project,
                              QKeySequence.StandardKey.Open, "Open a project folder")
    add_folder = new_action(window, "&Add Folder…", window.choose_folder, "Ctrl+Shift+O",
                            "Add a folder of images (also: drop a folder on the window)")
    demo = new_action(window, "Generate &Demo Data", window.make_demo,
                      tip="Generate synthetic demo images with tags and add them")
    quit_action = new_action(window, "&Quit", window.close, QKeySequence.StandardKey.Quit,
                             "Quit (every edit is already saved)")
    file_menu.addActions([new_project, open_project])
    acts.recent_menu = file_menu.addMenu("Open &Recent")
    acts.refresh_recent()
    file_menu.addSeparator()
    file_menu.addActions([add_folder, demo])
    file_menu.addSeparator()
    file_menu.addAction(quit_action)
    acts.group("Project", new_project, open_project, add_folder, quit_action)

    # Edit
    edit_menu = bar.addMenu("&Edit")
    undo = undo_stack.createUndoAction(window, "&Undo")
    undo.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Undo))
    undo.setToolTip("Undo the last edit (bulk edits undo in one step)")
    redo = undo_stack.createRedoAction(window, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    redo.setToolTip("Redo")
    window.addAction(undo)
    window.addAction(redo)
    select_all = new_action(window, "Select &All", window.gallery.selectAll,
                            QKeySequence.StandardKey.SelectAll, "Select every image shown")
    add_tag = new_action(window, "Add Tag to Selection…", window.add_tag_to_selection,
                         "Ctrl+T", "Add a tag to every selected image (one undo step)")
    classes = new_action(window, "&Classes…", window.show_classes, "Ctrl+K",
                         "Add, rename, merge, delete classes; colours, keys and thresholds")
    edit_menu.addActions([undo, redo])
    edit_menu.addSeparator()
    edit_menu.addActions([select_all, add_tag])
    edit_menu.addSeparator()
    edit_menu.addAction(classes)
    acts.group("Editing", undo, redo, select_all, add_tag, classes)

    # Review
    review_menu = bar.addMenu("&Review")
    accept = [new_action(window, f"Accept Suggestion {n}", partial(window.accept_nth, n), str(n),
                         f"Accept the suggestion numbered {n}") for n in range(1, 10)]
    accept_all = new_action(window, "Accept All Shown", window.accept_all, "Space",
                            "Accept every suggestion listed for this image")
    reject = new_action(window, "Reject Suggestion", window.reject_current, "Delete",
                        "Reject the outlined suggestion (records a negative tag)")
    next_image = new_action(window, "Next Image", partial(window.step, 1), ["J"],
                            "Next image (also Right arrow in the gallery)")
    previous_image = new_action(window, "Previous Image", partial(window.step, -1), ["K"],
                                "Previous image (also Left arrow in the gallery)")
    add_tag_field = new_action(window, "Type a Tag", window.tag_panel.focus_add_field, "T",
                               "Type a tag to add, with completion")
    search = new_action(window, "Search", lambda: (window.filters.search.setFocus(),
                                                   window.filters.search.selectAll()),
                        QKeySequence.StandardKey.Find, "Search paths and tags")
    refresh = new_action(window, "Refresh", window.refresh, QKeySequence.StandardKey.Refresh,
                         "Re-run the gallery query and reload the models' output")
    submenu = review_menu.addMenu("Accept Suggestion")
    submenu.addActions(accept)
    review_menu.addActions([accept_all, reject])
    review_menu.addSeparator()
    review_menu.addActions([next_image, previous_image, add_tag_field, search, refresh])
    acts.group("Review", accept_all, reject, next_image, previous_image, add_tag_field, search,
               refresh)
    acts.accept_actions = accept

    # View
    view_menu = bar.addMenu("&View")
    regions = new_action(window, "Show Regions", window.viewer.show_regions.setChecked, "R",
                         "Show the teacher's regions", checkable=True,
                         checked=window.viewer.show_regions.isChecked())
    window.viewer.show_regions.toggled.connect(regions.setChecked)
    fit = new_action(window, "Fit Image", window.viewer.view.fit, "Ctrl+0", "Fit the image")
    actual = new_action(window, "Actual Size", window.viewer.view.actual_size, "Ctrl+1",
                        "One image pixel per screen pixel")
    zoom_in = new_action(window, "Zoom In", lambda: window.viewer.view.zoom_by(1.25),
                         QKeySequence.StandardKey.ZoomIn, "Zoom in")
    zoom_out = new_action(window, "Zoom Out", lambda: window.viewer.view.zoom_by(0.8),
                          QKeySequence.StandardKey.ZoomOut, "Zoom out")
    view_menu.addActions([regions, fit, actual, zoom_in, zoom_out])
    view_menu.addSeparator()
    sizes = view_menu.addMenu("Thumbnail Size")
    size_group = QActionGroup(window)
    current_size = str(window.settings.value("gallery/thumb_size", "medium"))
    for name in ("small", "medium", "large"):
        action = new_action(window, name.title(), None, checkable=True,
                            checked=name == current_size)
        action.triggered.connect(partial(_set_thumb_size, window, name))
        size_group.addAction(action)
        sizes.addAction(action)
    themes = view_menu.addMenu("Theme")
    theme_group = QActionGroup(window)
    current_theme = str(window.settings.value("theme", "system"))
    for name in THEMES:
        action = new_action(window, name.title(), None, checkable=True,
                            checked=name == current_theme)
        action.triggered.connect(partial(_set_theme, window, name))
        theme_group.addAction(action)
        themes.addAction(action)
    view_menu.addSeparator()
    window.view_docks_menu = view_menu.addMenu("Panels")
    for dock in (window.tags_dock, window.history_dock):
        window.view_docks_menu.addAction(dock.toggleViewAction())
    acts.group("Viewer", regions, fit, actual, zoom_in, zoom_out)

    # Help
    help_menu = bar.addMenu("&Help")
    sheet = new_action(window, "Keyboard Shortcuts", window.show_shortcuts, ["?", "F1"],
                       "Show every keyboard shortcut")
    help_menu.addAction(sheet)
    acts.group("Help", sheet)

    # Tool bar
    for action, name in ((add_folder, "folder-add"), (undo, "undo"), (redo, "redo"),
                         (previous_image, "previous"), (next_image, "next"),
                         (accept_all, "accept-all"), (reject, "reject"), (classes, "tags"),
                         (fit, "fit"), (refresh, "refresh"), (sheet, "keyboard")):
        action.setIcon(icon(name))
    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("mainToolBar")
    toolbar.setMovable(False)
    toolbar.addActions([add_folder])
    toolbar.addSeparator()
    toolbar.addActions([undo, redo])
    toolbar.addSeparator()
    toolbar.addActions([previous_image, next_image, accept_all, reject])
    toolbar.addSeparator()
    toolbar.addActions([classes, fit, refresh, sheet])
    acts.toolbar = toolbar
    return acts


def _set_thumb_size(window, name: str, _checked: bool = True) -> None:
    window.settings.setValue("gallery/thumb_size", name)
    window.gallery.set_thumbnail_size(name)


def _set_theme(window, name: str, _checked: bool = True) -> None:
    switch_theme(window.settings, name)
    QTimer.singleShot(0, window.gallery.viewport().update)
