"""The gallery's list model: it holds only image ids; row facts are fetched lazily in pages from
the database thread, thumbnails from the `ThumbnailCache`. 100,000 rows cost a list of ints.

The id list comes from an engine-side query (`engine.store.queries.query_ids`) and stays stable
while the person works (tagging an image in the "untagged" view does not make it jump away);
it is re-run when the filter changes, images are added, models change, or on Refresh.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from app.state import ProjectState
from app.thumbnails import ThumbnailCache
from engine.store import queries as gq

PAGE = 200
MAX_CACHED_ROWS = 20_000

ImageIdRole = Qt.ItemDataRole.UserRole + 1
RowRole = Qt.ItemDataRole.UserRole + 2          # gq.GalleryRow or None while loading
ThumbnailRole = Qt.ItemDataRole.UserRole + 3    # QPixmap or None while decoding
ThumbnailErrorRole = Qt.ItemDataRole.UserRole + 4


class GalleryModel(QAbstractListModel):
    """Image ids in filter order. `query_finished(count)` fires after each (re)query."""

    query_finished = Signal(int)

    def __init__(self, state: ProjectState, thumbnails: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.thumbnails = thumbnails
        self.filter = gq.GalleryFilter()
        self._ids: list[int] = []
        self._row_of: dict[int, int] | None = None
        self._rows: dict[int, gq.GalleryRow] = {}
        self._pending_pages: set[int] = set()
        self._generation = 0
        self.loading = False
        thumbnails.ready.connect(self._thumbnail_ready)
        thumbnails.failed.connect(lambda image_id, _reason: self._thumbnail_ready(image_id))
        state.tags_changed.connect(self.refresh_rows)

    # -- Qt model API ----------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = index.row()
        if role == ImageIdRole:
            return self._ids[row]
        if role == RowRole:
            return self.row_facts(row)
        if role == ThumbnailRole:
            return self.thumbnail(row)
        if role == ThumbnailErrorRole:
            return self.thumbnail_error(row)
        if role == Qt.ItemDataRole.DisplayRole:
            facts = self.row_facts(row)
            return facts.name if facts else ""
        if role == Qt.ItemDataRole.ToolTipRole:
            facts = self.row_facts(row)
            return self._tooltip(facts) if facts else None
        return None

    # The delegate calls these directly: plain Python, no QVariant round trip per cell and role.
    def row_facts(self, row: int) -> gq.GalleryRow | None:
        """The row's facts, or None while its page loads (the page is requested)."""
        image_id = self._ids[row]
        facts = self._rows.get(image_id)
        if facts is None:
            self._request_page(row // PAGE)
        return facts

    def thumbnail(self, row: int):
        """QPixmap, or None while it decodes (it is requested) or when the file is unreadable."""
        facts = self.row_facts(row)
        if facts is None or facts.status == "unreadable":
            return None
        return self.thumbnails.get(facts.image_id, facts.path, facts.content_hash)

    def thumbnail_error(self, row: int) -> str | None:
        facts = self._rows.get(self._ids[row])
        if facts is not None and facts.status == "unreadable":
            return facts.reason or "unreadable"
        return self.thumbnails.error(self._ids[row])

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # -- ids -------------------------------------------------------------------------------------
    def ids(self) -> list[int]:
        return self._ids

    def image_id(self, row: int) -> int | None:
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def row_of(self, image_id: int) -> int | None:
        if self._row_of is None:
            self._row_of = {image_id: row for row, image_id in enumerate(self._ids)}
        return self._row_of.get(image_id)

    def cached_ids(self) -> list[int]:
        return list(self._rows)

    def cached_row(self, image_id: int) -> gq.GalleryRow | None:
        return self._rows.get(image_id)

    def set_filter(self, flt: gq.GalleryFilter) -> None:
        self.filter = flt
        self.requery()

    def requery(self) -> None:
        """Re-run the query (filter changed, images added, models changed, Refresh)."""
        self.loading = True
        self.state.workers.db(gq.query_ids, self.filter, self.state.versions, key="gallery-ids",
                              on_done=self._set_ids, on_error=self._query_failed)

    def clear(self) -> None:
        self.beginResetModel()
        self._generation += 1
        self._ids, self._row_of = [], None
        self._rows.clear()
        self._pending_pages.clear()
        self.endResetModel()

    def _set_ids(self, ids: list[int]) -> None:
        self.beginResetModel()
        self._generation += 1
        self._ids, self._row_of = ids, None
        self._rows.clear()
        self._pending_pages.clear()
        self.endResetModel()
        self.loading = False
        self.query_finished.emit(len(ids))

    def _query_failed(self, exc: BaseException) -> None:
        self.loading = False
        self.state.workers.error.emit(exc)

    # -- rows ------------------------------------------------------------------------------------
    def _request_page(self, page: int) -> None:
        if page in self._pending_pages:
            return
        self._pending_pages.add(page)
        ids = self._ids[page * PAGE:(page + 1) * PAGE]
        generation = self._generation
        self.state.workers.db(gq.gallery_rows, ids, self.state.versions,
                              on_done=lambda rows: self._rows_arrived(generation, page, rows))

    def _rows_arrived(self, generation: int, page: int, rows: dict[int, gq.GalleryRow]) -> None:
        if generation != self._generation:
            return
        self._pending_pages.discard(page)
        if len(self._rows) > MAX_CACHED_ROWS:
            self._rows.clear()
        self._rows.update(rows)
        first = page * PAGE
        last = min(len(self._ids), first + PAGE) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first), self.index(last))

    def refresh_rows(self, image_ids) -> None:
        """Re-fetch the rows of these images (their tags changed); the id list stays."""
        wanted = [i for i in image_ids if i in self._rows]
        if not wanted:
            return
        generation = self._generation
        self.state.workers.db(gq.gallery_rows, wanted, self.state.versions,
                              on_done=lambda rows: self._refreshed(generation, rows))

    def _refreshed(self, generation: int, rows: dict[int, gq.GalleryRow]) -> None:
        if generation != self._generation:
            return
        self._rows.update(rows)
        for image_id in rows:
            self._emit_changed(image_id)

    def _thumbnail_ready(self, image_id: int) -> None:
        self._emit_changed(image_id)

    def _emit_changed(self, image_id: int) -> None:
        row = self.row_of(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [ThumbnailRole, RowRole])

    def _tooltip(self, row: gq.GalleryRow) -> str:
        names = ", ".join(self.state.class_name(c) for c in row.positive) or "no tags"
        lines = [f"<b>{_escape(row.name)}</b>", f"Tags: {_escape(names)}", f"Split: {row.split}"]
        if row.pending:
            lines.append(f"{row.pending} pending suggestion(s)")
        if row.copies > 1:
            lines.append(f"Duplicate: {row.copies} files of the project have these same bytes "
                         "(filter: Duplicates)")
        if row.status == "unreadable":
            lines.append(f"<span style='color:#e57373'>Unreadable: {_escape(row.reason or '')}"
                         "</span>")
        return "<br>".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
