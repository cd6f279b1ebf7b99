"""The thumbnail grid: QListView in icon mode with uniform item sizes and batched layout, so
100,000 items lay out in slices and only visible cells are painted."""

from __future__ import annotations

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QPoint,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtWidgets import QAbstractItemView, QListView

from app.gallery.delegate import GalleryDelegate
from app.gallery.model import GalleryModel, ImageIdRole
from app.thumbnails import ThumbnailCache

SIZES = {"small": 112, "medium": 160, "large": 224}


class GalleryView(QListView):
    """Emits `current_image_changed(image_id or 0)` and `selection_changed_ids(list)`."""

    current_image_changed = Signal(int)
    selection_changed_ids = Signal(list)
    painted = Signal()                    # after each viewport paint (benchmark, tests)

    def __init__(self, model: GalleryModel, delegate: GalleryDelegate,
                 thumbnails: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.delegate = delegate
        self.setObjectName("gallery")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(2000)
        self.setWrapping(True)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # A scroll bar appearing mid-layout would change the width and restart the layout.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setMouseTracking(True)
        self.setItemDelegate(delegate)
        self.setModel(model)
        self.set_thumbnail_size("medium")
        self.selectionModel().currentChanged.connect(self._current_changed)
        self.selectionModel().selectionChanged.connect(self._selection_changed)
        self._kept: tuple[int | None, list[int]] = (None, [])
        model.modelAboutToBeReset.connect(self._remember_selection)
        model.modelReset.connect(self._restore_selection)
        self.setToolTip("")
        self.setAccessibleName("Image gallery")

    def set_thumbnail_size(self, name: str) -> None:
        size = SIZES.get(name, SIZES["medium"])
        self.delegate.set_thumbnail_size(size)
        self.thumbnails.set_display_size(size)
        self.setGridSize(self.delegate.cell_size() + QSize(4, 4))
        self.verticalScrollBar().setSingleStep(self.gridSize().height() // 4)
        self.scheduleDelayedItemsLayout()

    # -- navigation ------------------------------------------------------------------------------
    def moveCursor(self, action, modifiers):
        """Left/Right (and Next/Previous) move by one image in list order, wrapping rows."""
        current = self.currentIndex()
        model = self.model()
        if current.isValid() and action in (QAbstractItemView.CursorAction.MoveRight,
                                            QAbstractItemView.CursorAction.MoveNext,
                                            QAbstractItemView.CursorAction.MoveLeft,
                                            QAbstractItemView.CursorAction.MovePrevious):
            step = 1 if action in (QAbstractItemView.CursorAction.MoveRight,
                                   QAbstractItemView.CursorAction.MoveNext) else -1
            row = min(max(current.row() + step, 0), model.rowCount() - 1)
            return model.index(row, 0)
        return super().moveCursor(action, modifiers)

    def step(self, delta: int) -> None:
        """Select the image `delta` rows away from the current one (J/K, arrows)."""
        count = self.model().rowCount()
        if count == 0:
            return
        current = self.currentIndex()
        row = 0 if not current.isValid() else min(max(current.row() + delta, 0), count - 1)
        self.select_row(row)

    def select_row(self, row: int) -> None:
        index = self.model().index(row, 0)
        if not index.isValid():
            return
        self.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(index)

    def select_image(self, image_id: int) -> bool:
        row = self.model().row_of(image_id)
        if row is None:
            return False
        self.select_row(row)
        return True

    def current_image_id(self) -> int | None:
        index = self.currentIndex()
        return index.data(ImageIdRole) if index.isValid() else None

    def selected_ids(self) -> list[int]:
        rows: set[int] = set()
        for selection_range in self.selectionModel().selection():
            rows.update(range(selection_range.top(), selection_range.bottom() + 1))
        ids = self.model().ids()
        return [ids[row] for row in sorted(rows) if row < len(ids)]

    # -- requery keeps the place -------------------------------------------------------------------
    def _remember_selection(self) -> None:
        """Before the ids are replaced (Refresh, a finished job, new suggestions): the person's
        current image and selection, to put back on the same images afterwards."""
        self._kept = (self.current_image_id(), self.selected_ids())

    def _restore_selection(self) -> None:
        current, selected = self._kept
        self._kept = (None, [])
        model = self.model()
        rows = sorted(r for r in (model.row_of(i) for i in selected) if r is not None)
        selection = QItemSelection()
        start = previous = None
        for row in rows + [None]:                 # contiguous rows as one range each
            if row is not None and previous is not None and row == previous + 1:
                previous = row
                continue
            if start is not None:
                selection.select(model.index(start, 0), model.index(previous, 0))
            start = previous = row
        flags = QItemSelectionModel.SelectionFlag
        self.selectionModel().select(selection, flags.ClearAndSelect)
        row = model.row_of(current) if current is not None else None
        if row is not None:
            self.selectionModel().setCurrentIndex(model.index(row, 0), flags.NoUpdate)
            self.scrollTo(model.index(row, 0))

    # -- events ----------------------------------------------------------------------------------
    def visible_rows(self, margin: int = 0) -> range:
        """Rows on screen (plus `margin` cells either side); empty when none."""
        rect = self.viewport().rect()
        grid = self.gridSize()
        first = None
        for y in range(2, grid.height() + 2, 6):       # the first cell under the top edge
            index = self.indexAt(QPoint(grid.width() // 2, y))
            if index.isValid():
                first = index
                break
        if first is None:
            return range(0)
        columns = max(1, rect.width() // max(1, grid.width()))
        rows = rect.height() // max(1, grid.height()) + 2
        start = max(0, first.row() - margin)
        return range(start, min(self.model().rowCount(), first.row() + columns * rows + margin))

    def paintEvent(self, event) -> None:
        ids = self.model().ids()
        rows = self.visible_rows(margin=self.columns())
        self.thumbnails.set_visible(ids[rows.start:rows.stop])
        super().paintEvent(event)
        self.painted.emit()

    def columns(self) -> int:
        return max(1, self.viewport().width() // max(1, self.gridSize().width()))

    def _current_changed(self, current, _previous) -> None:
        self.current_image_changed.emit(current.data(ImageIdRole) if current.isValid() else 0)

    def _selection_changed(self, _selected, _deselected) -> None:
        self.selection_changed_ids.emit(self.selected_ids())
