"""The main window: gallery (with its filter bar) and the review view side by side, the tag panel
and the history as docks, menus, the status bar, and project handling.

Layout, wiring and persistence live here; every feature is its own module. Views refresh from
`ProjectState`'s change signals; every database access goes through `self.workers`.

Extension docks (training panel, batch tagging, review queue) are added in
`_add_extension_docks()` with `add_dock(widget, title)`; they get `self.state` (classes, versions,
undo stack, change signals), `self.workers` (jobs with progress/cancel) and
`selected_image_ids()`. After a job that changes models or suggestions they call
`self.state.models_changed()`; the gallery, review view and counts refresh from it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import dialogs, project_jobs
from app.gallery.delegate import GalleryDelegate
from app.gallery.filters import FilterBar
from app.gallery.model import GalleryModel
from app.gallery.view import GalleryView
from app.menus import build_menus
from app.panels.classes_dialog import ClassesDialog
from app.panels.history_view import HistoryView
from app.panels.status_bar import StatusBar
from app.panels.tag_panel import TagPanel
from app.shortcuts import ShortcutSheet, sheet_html
from app.state import ProjectState
from app.style import install_wheel_guard
from app.thumbnails import ThumbnailCache
from app.undo import TagEditCommand, toggle_plan
from app.viewer.panel import ViewerPanel
from app.workers import Workers
from engine.project import default_project_dir
from engine.store import queries as gq

log = logging.getLogger(__name__)
MAX_RECENT = 8


class MainWindow(QMainWindow):
    def __init__(self, project_dir: Path | str | None = None, folder: Path | str | None = None,
                 settings: QSettings | None = None, offer_demo: bool = True,
                 db_url: str | None = None) -> None:
        super().__init__()
        install_wheel_guard(QApplication.instance())   # before any spin or combo box exists
        self.setObjectName("mainWindow")
        self.setWindowTitle("mlic")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings()
        self.offer_demo = offer_demo
        self.project_dir: Path | None = None
        self._db_url = db_url          # a team database: the project opened at start only
        self._pending_folder = str(folder) if folder else None
        self._restore_image: int | None = None
        self._classes_dialog: ClassesDialog | None = None
        self._falling_back = False
        self._loop_docks = None
        self._state_restored = False
        self._class_actions: list = []

        self.workers = Workers(parent=self)
        self.state = ProjectState(self.workers, self)
        self.thumbnails = ThumbnailCache(self.workers, self)
        self.model = GalleryModel(self.state, self.thumbnails, self)
        self.delegate = GalleryDelegate(self.state, self)
        self.gallery = GalleryView(self.model, self.delegate, self.thumbnails)
        self.filters = FilterBar(self.state)
        self.viewer = ViewerPanel(self.state, self.settings)
        self.tag_panel = TagPanel(self.state)
        self.history = HistoryView(self.state)
        self.status = StatusBar(self.state, self.workers, self)
        self.setStatusBar(self.status)

        gallery_pane = QWidget()
        pane_layout = QVBoxLayout(gallery_pane)
        pane_layout.setContentsMargins(0, 0, 0, 0)
        pane_layout.setSpacing(0)
        pane_layout.addWidget(self.filters)
        pane_layout.addWidget(self.gallery, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(gallery_pane)
        self.splitter.addWidget(self.viewer)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)
        self.tags_dock = self.add_dock(self.tag_panel, "Tags", Qt.DockWidgetArea.RightDockWidgetArea)
        self.history_dock = self.add_dock(self.history, "History",
                                          Qt.DockWidgetArea.RightDockWidgetArea)
        self.actions = build_menus(self)
        self._wire()
        self._restore_window()
        # Extension docks (and their imports, e.g. pyqtgraph) come after the first gallery paint:
        # they are not needed to see the images. Asking for `loop_docks` creates them at once.
        self.gallery.painted.connect(self._first_paint)
        self._docks_timer = QTimer(self, singleShot=True, interval=1500)   # empty projects too
        self._docks_timer.timeout.connect(self._ensure_extension_docks)
        self._docks_timer.start()
        self.open_project(project_dir or (None if db_url else self.settings.value("last_project")
                                          or default_project_dir()))

    # ---------------------------------------------------------------------------------------------
    # Docks
    def add_dock(self, widget: QWidget, title: str,
                 area: Qt.DockWidgetArea = Qt.DockWidgetArea.BottomDockWidgetArea,
                 object_name: str | None = None) -> QDockWidget:
        """Dock `widget` (tabbed with other docks of the same area); its state persists by
        `object_name` (default: from the title). Returns the QDockWidget; the View menu lists it.
        Its minimum size is relaxed, so a tall panel never squeezes the gallery and the viewer."""
        dock = QDockWidget(title, self)
        dock.setObjectName(object_name or f"dock-{title.lower().replace(' ', '-')}")
        widget.setMinimumSize(QSize(60, 60))   # an explicit minimum overrides the layout's
        dock.setWidget(widget)
        # a dock made after restoreState() gets the place and visibility it had last time
        if not (self._state_restored and self.restoreDockWidget(dock)):
            existing = [d for d in self.findChildren(QDockWidget)
                        if d is not dock and self.dockWidgetArea(d) == area
                        and not d.isFloating()]
            self.addDockWidget(area, dock)
            if existing and area == Qt.DockWidgetArea.BottomDockWidgetArea:
                self.tabifyDockWidget(existing[-1], dock)
        view_menu = getattr(self, "view_docks_menu", None)
        if view_menu is not None:
            view_menu.addAction(dock.toggleViewAction())
        return dock

    def _add_extension_docks(self) -> None:
        """Docks of other features (training panel, batch tagging, review queue) are created here,
        each with `self.add_dock(Widget(self.state, self.workers, ...), "Title")`."""
        from app.loop.docks import LoopDocks

        self._loop_docks = LoopDocks(self)     # Training and Review docks, Model menu

    @property
    def loop_docks(self):
        """The Training / Review loop docks (created now if the window has not yet)."""
        self._ensure_extension_docks()
        return self._loop_docks

    def _first_paint(self) -> None:
        if self.model.rowCount():
            self.gallery.painted.disconnect(self._first_paint)
            QTimer.singleShot(0, self, self._ensure_extension_docks)

    def _ensure_extension_docks(self) -> None:
        if self._loop_docks is not None:
            return
        self._docks_timer.stop()
        self._add_extension_docks()
        if not self._state_restored:
            QTimer.singleShot(0, self, self._default_dock_sizes)

    # ---------------------------------------------------------------------------------------------
    # Wiring
    def _wire(self) -> None:
        self.workers.error.connect(lambda exc: dialogs.show_error(self, exc))
        self.filters.filter_changed.connect(self.model.set_filter)
        self.filters.search_problem_found.connect(
            lambda text: self.status.showMessage(f"Search not understood: {text}", 15000))
        self.model.query_finished.connect(self._query_finished)
        self.gallery.current_image_changed.connect(self._current_changed)
        self.gallery.selection_changed_ids.connect(self._selection_changed)
        self.tag_panel.hovered.connect(lambda c: self.viewer.highlight(None if c < 0 else c))
        self.tag_panel.typing_done.connect(self.gallery.setFocus)
        self.tag_panel.all_decided.connect(self._all_decided)
        self.state.tags_changed.connect(self._tags_changed)
        self.state.classes_changed.connect(self._classes_changed)
        self.state.versions_changed.connect(self._versions_changed)
        self.state.images_changed.connect(self.model.requery)

    def _query_finished(self, count: int) -> None:
        self.filters.show_count(count)
        if self._restore_image is not None:
            image_id, self._restore_image = self._restore_image, None
            if self.gallery.select_image(image_id):
                return
        if count and not self.gallery.currentIndex().isValid():
            self.gallery.select_row(0)
        if count == 0:
            self._current_changed(0)

    def _current_changed(self, image_id: int) -> None:
        if not image_id:
            self.tag_panel.set_detail(None)
            self.viewer.show_detail(None)
            self.history.set_image(None)
            return
        self.settings.setValue(self._project_key("last_image"), image_id)
        self.load_detail(image_id)
        self.history.set_image(image_id)

    def load_detail(self, image_id: int | None = None) -> None:
        image_id = image_id or self.gallery.current_image_id()
        if image_id:
            self.workers.db(gq.image_detail, image_id, self.state.versions, key="detail",
                            on_done=self._detail_arrived)

    def _detail_arrived(self, detail: gq.ImageDetail) -> None:
        if detail.image_id != self.gallery.current_image_id():
            return
        if not self.tag_panel.is_bulk():
            self.tag_panel.set_detail(detail)
        self.viewer.show_detail(detail)

    def _selection_changed(self, ids: list[int]) -> None:
        if len(ids) > 1:
            self.tag_panel.set_selection(ids)
        elif self.tag_panel.is_bulk():
            self.tag_panel.set_selection(ids)
            self.load_detail()

    def _tags_changed(self, image_ids) -> None:
        current = self.gallery.current_image_id()
        if current in image_ids or not image_ids:
            self.load_detail(current)
        if self.tag_panel.is_bulk():
            self.tag_panel.set_selection(self.gallery.selected_ids())

    def _classes_changed(self) -> None:
        self.model.refresh_rows(self.model.cached_ids())
        self.load_detail()
        self._rebuild_class_actions()

    def _versions_changed(self) -> None:
        self.model.requery()
        self.load_detail()

    def selected_image_ids(self) -> list[int]:
        """The gallery selection (for bulk operations and extension docks)."""
        return self.gallery.selected_ids()

    # ---------------------------------------------------------------------------------------------
    # Projects
    def open_project(self, project_dir: Path | str | None) -> None:
        """Open (or create) a project folder (None: the `db_url` given at start, its models in a
        folder of its own); the current one is closed after its queued writes.
        Running jobs (they work on the current project) are cancelled, after asking."""
        jobs = self.workers.running_jobs()
        if jobs:
            titles = ", ".join(job.title for job in jobs)
            if not dialogs.ask(self, "Switch project", f"Running: {titles}. Switching projects "
                               "cancels it (a training run keeps its checkpoint). Switch?"):
                return
            for job in jobs:
                job.cancel()
        self._save_project_view()
        self.model.clear()
        self.tag_panel.set_detail(None)
        self.viewer.show_detail(None)
        self.history.set_image(None)
        self.state.undo_stack.clear()
        self.status.showMessage(f"Opening {project_dir or 'the team database'}…")
        db_url, self._db_url = self._db_url, None
        self.workers.open_project(project_dir and Path(project_dir), on_done=self._project_opened,
                                  on_error=self._project_failed, db_url=db_url)

    def _project_opened(self, store) -> None:
        self._falling_back = False
        self.project_dir = store.paths.root
        self.thumbnails.set_cache_dir(store.paths.thumbnails_cache)
        if store.url.startswith("sqlite"):    # a team database is opened by its URL, not remembered
            self.settings.setValue("last_project", str(self.project_dir))
            self._remember_recent(str(self.project_dir))
        last = self.settings.value(self._project_key("last_image"))
        self._restore_image = int(last) if last not in (None, "") else None
        self._update_title()
        self.status.showMessage(f"Opened {self.project_dir}", 4000)
        self.state.reload()
        if self._pending_folder:
            folder, self._pending_folder = self._pending_folder, None
            self.add_folder(folder)
        elif self.offer_demo:
            self.workers.db(lambda s: s.images.count(), key="empty-check",
                            on_done=self._maybe_offer_demo)
        self.gallery.setFocus()

    def _project_failed(self, exc: BaseException) -> None:
        """Say why, then go back to the project that was open (or the default one), once."""
        dialogs.show_error(self, exc, "Cannot open project")
        fallback = self.project_dir or default_project_dir()
        if not self._falling_back:
            self._falling_back = True
            self.project_dir = None
            self.open_project(fallback)

    def _maybe_offer_demo(self, count: int) -> None:
        if count or self.settings.value(self._project_key("demo_offered")) in ("true", True):
            return
        self.settings.setValue(self._project_key("demo_offered"), True)
        if dialogs.ask(self, "Empty project", (
                "This project has no images yet. Generate demo data "
                f"({project_jobs.DEMO_IMAGES} synthetic images with tags) to try the tool?\n\n"
                "You can also add your own folder (File > Add Folder, or drop it on the window).")):
            self.make_demo()

    def new_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose an empty folder")
        if folder:
            self.open_project(folder)

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder",
                                                  str(self.project_dir or Path.home()))
        if folder:
            self.open_project(folder)

    def _remember_recent(self, path: str) -> None:
        recent = [p for p in self.recent_projects() if p != path]
        self.settings.setValue("recent_projects", [path] + recent[:MAX_RECENT - 1])
        self.actions.refresh_recent()

    def recent_projects(self) -> list[str]:
        value = self.settings.value("recent_projects") or []
        return [value] if isinstance(value, str) else list(value)

    def _project_key(self, name: str) -> str:
        return f"projects/{str(self.project_dir or '').replace('/', '|')}/{name}"

    def _update_title(self) -> None:
        name = self.project_dir.name if self.project_dir else "no project"
        self.setWindowTitle(f"{name} — mlic")
        self.setWindowModified(False)

    # ---------------------------------------------------------------------------------------------
    # Folders and demo data
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of images",
                                                  str(self.settings.value("last_folder") or
                                                      Path.home()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        """Register the images under `folder` in a background job (progress in the status bar)."""
        self.settings.setValue("last_folder", folder)
        self.workers.start_job(f"Adding {Path(folder).name}", project_jobs.add_folder, folder,
                               on_done=self._folder_added)

    def _folder_added(self, report) -> None:
        self.status.showMessage(report.summary(), 10000)
        self.state.notify_images_changed()

    def make_demo(self) -> None:
        self.workers.start_job("Generating demo data", project_jobs.make_demo,
                               on_done=self._demo_done)

    def _demo_done(self, message: str) -> None:
        self.status.showMessage(message, 10000)
        self.state.reload_classes()
        self.state.notify_images_changed()

    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() and Path(url.toLocalFile()).is_dir()
               for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile() and Path(url.toLocalFile()).is_dir():
                self.add_folder(url.toLocalFile())
        event.acceptProposedAction()

    # ---------------------------------------------------------------------------------------------
    # Review keys
    def accept_nth(self, number: int) -> None:
        self.tag_panel.accept_nth(number)

    def accept_all(self) -> None:
        self.tag_panel.accept_all_shown()

    def reject_current(self) -> None:
        self.tag_panel.reject_current()

    def step(self, delta: int) -> None:
        self.gallery.step(delta)

    def move_outline(self, delta: int) -> None:
        self.tag_panel.move_current(delta)

    def _all_decided(self, image_id: int) -> None:
        """Auto-advance (Review menu): on to the next image once this one has nothing pending."""
        if (self.actions.auto_advance.isChecked() and not self.tag_panel.is_bulk()
                and self.gallery.current_image_id() == image_id):
            self.step(1)

    def toggle_class(self, class_id: int) -> None:
        ids = self.gallery.selected_ids() or ([self.gallery.current_image_id()]
                                              if self.gallery.current_image_id() else [])
        if not ids:
            return
        name = self.state.class_name(class_id)
        text = f"Toggle {name}" + (f" on {len(ids):,} images" if len(ids) > 1 else "")
        self.state.undo_stack.push(TagEditCommand(self.state, text, toggle_plan(ids, class_id),
                                                  ids))

    def _rebuild_class_actions(self) -> None:
        for action in self._class_actions:
            self.removeAction(action)
            action.deleteLater()
        self._class_actions = self.actions.class_key_actions(self.state.classes.values())

    def add_tag_to_selection(self) -> None:
        name = dialogs.get_text(self, "Add tag", "Tag to add to the selected images:")
        if name:
            self.tag_panel.add_tag(name)

    def show_classes(self) -> None:
        if self._classes_dialog is None:
            self._classes_dialog = ClassesDialog(self.state, self)
        self._classes_dialog.sync()
        self._classes_dialog.show()
        self._classes_dialog.raise_()

    def show_shortcuts(self) -> ShortcutSheet:
        keys = [(c.shortcut.upper(), f"Toggle {c.name}") for c in self.state.classes.values()
                if c.shortcut]
        sheet = ShortcutSheet(sheet_html(self.actions.groups, keys), self)
        sheet.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        sheet.show()
        return sheet

    def refresh(self) -> None:
        self.state.reload_classes()
        self.state.models_changed()

    # ---------------------------------------------------------------------------------------------
    # Persistence
    def _restore_window(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray):
            self._state_restored = self.restoreState(state)
        if not self._state_restored:
            QTimer.singleShot(0, self, self._default_dock_sizes)      # once the window is laid out
        splitter = self.settings.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([560, 540])
        self.filters.restore(self.settings)
        self.model.filter = self.filters.current_filter()
        self.gallery.set_thumbnail_size(str(self.settings.value("gallery/thumb_size", "medium")))

    def _default_dock_sizes(self) -> None:
        """First start: the gallery and the viewer come first; side and bottom docks start small."""
        self.resizeDocks([self.tags_dock], [340], Qt.Orientation.Horizontal)
        self.resizeDocks([self.tags_dock, self.history_dock], [520, 260], Qt.Orientation.Vertical)
        bottom = [d for d in self.findChildren(QDockWidget) if not d.isFloating()
                  and self.dockWidgetArea(d) == Qt.DockWidgetArea.BottomDockWidgetArea]
        if bottom:
            self.resizeDocks(bottom, [max(230, self.height() * 3 // 10)] * len(bottom),
                             Qt.Orientation.Vertical)

    def _save_project_view(self) -> None:
        image_id = self.gallery.current_image_id()
        if self.project_dir is not None and image_id:
            self.settings.setValue(self._project_key("last_image"), image_id)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/splitter", self.splitter.saveState())
        self.filters.save(self.settings)
        self.viewer.save(self.settings)
        if self._loop_docks is not None:
            self._loop_docks.save(self.settings)
        self._save_project_view()
        self.settings.sync()

    def closeEvent(self, event) -> None:
        if self._classes_dialog is not None:
            self._classes_dialog.flush()
        self.save_settings()
        self.state.stop()
        self.workers.shutdown()          # queued writes finish before the store closes
        super().closeEvent(event)

