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
from app.undo import mark_complete


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
    """The window's menus (File, Edit, Review, View, Help) and tool bar; returns their actions."""
    acts = WindowActions(window)
    bar = window.menuBar()
    named = {}
    named.update(_file_menu(window, bar.addMenu("&File"), acts))
    named.update(_edit_menu(window, bar.addMenu("&Edit"), acts))
    named.update(_review_menu(window, bar.addMenu("&Review"), acts))
    named.update(_view_menu(window, bar.addMenu("&View"), acts))
    named.update(_help_menu(window, bar.addMenu("&Help"), acts))
    acts.toolbar = _tool_bar(window, named)
    return acts


def _file_menu(window, menu: QMenu, acts: WindowActions) -> dict:
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
    menu.addActions([new_project, open_project])
    acts.recent_menu = menu.addMenu("Open &Recent")
    acts.refresh_recent()
    menu.addSeparator()
    menu.addActions([add_folder, demo])
    menu.addSeparator()
    menu.addActions(_exchange_actions(window))
    menu.addSeparator()
    menu.addAction(quit_action)
    acts.group("Project", new_project, open_project, add_folder, quit_action)
    return {"folder-add": add_folder}


def _exchange_actions(window) -> list:
    """Import Keywords…, Write Keywords Back…, CSV and COCO import/export (app.exchange)."""
    from app import exchange

    entries = (("import-keywords", "Import &Keywords…",
                "Read the keywords of the project's photos (sidecars, embedded XMP, IPTC)"),
               ("write-keywords", "&Write Keywords Back…",
                "Write confirmed tags into the photos' sidecars or embedded metadata"),
               ("import-csv", "Import CSV…", "Import tags from a CSV file"),
               ("import-coco", "Import COCO…", "Import classes, tags and boxes from COCO"),
               ("export-csv", "Export CSV…", "Export the tags as a CSV file"),
               ("export-coco", "Export COCO…", "Export the tags as a COCO file"))
    return [new_action(window, text, partial(exchange.show, window, name), tip=tip)
            for name, text, tip in entries]


def _edit_menu(window, menu: QMenu, acts: WindowActions) -> dict:
    undo_stack = window.state.undo_stack
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
    menu.addActions([undo, redo])
    menu.addSeparator()
    menu.addActions([select_all, add_tag])
    menu.addSeparator()
    menu.addAction(classes)
    acts.group("Editing", undo, redo, select_all, add_tag, classes)
    return {"undo": undo, "redo": redo, "tags": classes}


def _review_menu(window, menu: QMenu, acts: WindowActions) -> dict:
    accept = [new_action(window, f"Accept Suggestion {n}", partial(window.accept_nth, n), str(n),
                         f"Accept the suggestion numbered {n}") for n in range(1, 10)]
    accept_all = new_action(window, "Accept All Shown", window.accept_all, "Space",
                            "Accept every suggestion listed for this image")
    reject = new_action(window, "Reject Suggestion", window.reject_current, "Delete",
                        "Reject the outlined suggestion (records a negative tag)")
    complete = new_action(window, "Mark Image &Complete", partial(_mark_complete, window),
                          ["Ctrl+Return", "Ctrl+Enter"], "Every class the image (or each "
                          "selected image) has no tag for becomes a 'no': the image is complete")
    outline_next = new_action(window, "Outline Next Suggestion", partial(window.move_outline, 1),
                              ["]", "Alt+Down"], "Move the outline to the next suggestion")
    outline_previous = new_action(window, "Outline Previous Suggestion",
                                  partial(window.move_outline, -1), ["[", "Alt+Up"],
                                  "Move the outline to the previous suggestion")
    auto_advance = new_action(window, "Auto-Advance", None, tip=(
        "Go to the next image once every suggestion of this one is accepted or rejected"),
        checkable=True, checked=window.settings.value("review/auto_advance") in ("true", True))
    auto_advance.toggled.connect(lambda on: window.settings.setValue("review/auto_advance", on))
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
    submenu = menu.addMenu("Accept Suggestion")
    submenu.addActions(accept)
    menu.addActions([accept_all, reject, complete, outline_next, outline_previous, auto_advance])
    menu.addSeparator()
    menu.addActions([next_image, previous_image, add_tag_field, search, refresh])
    acts.group("Review", accept_all, reject, complete, outline_next, outline_previous, next_image,
               previous_image, add_tag_field, search, refresh)
    acts.accept_actions = accept
    acts.auto_advance = auto_advance
    return {"previous": previous_image, "next": next_image, "accept-all": accept_all,
            "reject": reject, "refresh": refresh, "complete": complete}


def _mark_complete(window) -> None:
    current = window.gallery.current_image_id()
    mark_complete(window.state, window.gallery.selected_ids() or ([current] if current else []))


def _view_menu(window, menu: QMenu, acts: WindowActions) -> dict:
    viewer = window.viewer
    regions = new_action(window, "Show Regions", viewer.show_regions.setChecked, "R",
                         "Show the teacher's regions", checkable=True,
                         checked=viewer.show_regions.isChecked())
    viewer.show_regions.toggled.connect(regions.setChecked)
    fit = new_action(window, "Fit Image", viewer.view.fit, "Ctrl+0", "Fit the image")
    actual = new_action(window, "Actual Size", viewer.view.actual_size, "Ctrl+1",
                        "One image pixel per screen pixel")
    zoom_in = new_action(window, "Zoom In", lambda: viewer.view.zoom_by(1.25),
                         QKeySequence.StandardKey.ZoomIn, "Zoom in")
    zoom_out = new_action(window, "Zoom Out", lambda: viewer.view.zoom_by(0.8),
                          QKeySequence.StandardKey.ZoomOut, "Zoom out")
    menu.addActions([regions, fit, actual, zoom_in, zoom_out])
    menu.addSeparator()
    _choice_menu(window, menu.addMenu("Thumbnail Size"), ("small", "medium", "large"),
                 str(window.settings.value("gallery/thumb_size", "medium")), _set_thumb_size)
    _choice_menu(window, menu.addMenu("Theme"), THEMES,
                 str(window.settings.value("theme", "system")), _set_theme)
    menu.addSeparator()
    window.view_docks_menu = menu.addMenu("Panels")
    for dock in (window.tags_dock, window.history_dock):
        window.view_docks_menu.addAction(dock.toggleViewAction())
    acts.group("Viewer", regions, fit, actual, zoom_in, zoom_out)
    return {"fit": fit}


def _choice_menu(window, menu: QMenu, names, current: str, choose) -> None:
    """Exclusive checkable entries; `choose(window, name)` when one is picked."""
    group = QActionGroup(window)
    for name in names:
        action = new_action(window, name.title(), None, checkable=True, checked=name == current)
        action.triggered.connect(partial(choose, window, name))
        group.addAction(action)
        menu.addAction(action)


def _help_menu(window, menu: QMenu, acts: WindowActions) -> dict:
    sheet = new_action(window, "Keyboard Shortcuts", window.show_shortcuts, ["?", "F1"],
                       "Show every keyboard shortcut")
    menu.addAction(sheet)
    acts.group("Help", sheet)
    return {"keyboard": sheet}


TOOL_BAR = (("folder-add",), ("undo", "redo"), ("previous", "next", "accept-all", "reject"),
            ("tags", "fit", "refresh", "keyboard"))     # sections; each name is also the icon


def _tool_bar(window, named: dict):
    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("mainToolBar")
    toolbar.setMovable(False)
    for n, section in enumerate(TOOL_BAR):
        if n:
            toolbar.addSeparator()
        for name in section:
            named[name].setIcon(icon(name))
            toolbar.addAction(named[name])
    return toolbar


def _set_thumb_size(window, name: str, _checked: bool = True) -> None:
    window.settings.setValue("gallery/thumb_size", name)
    window.gallery.set_thumbnail_size(name)


def _set_theme(window, name: str, _checked: bool = True) -> None:
    switch_theme(window.settings, name)
    QTimer.singleShot(0, window.gallery.viewport(), window.gallery.viewport().update)
