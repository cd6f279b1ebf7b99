"""Paints a gallery cell: the thumbnail, the file name, and badges for confirmed tags (green, with
the count and the first classes' colours), pending suggestions (orange), duplicates (indigo,
"2×": the same bytes under another name) and unreadable files (red).
Painting never decodes or queries anything: what is not loaded yet is drawn as a placeholder."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app import style
from app.state import ProjectState

MARGIN = 6
TEXT_HEIGHT = 18


class GalleryDelegate(QStyledItemDelegate):
    def __init__(self, state: ProjectState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.thumb = 160
        self._badge_font = QFont()
        self._badge_font.setPointSizeF(max(7.0, self._badge_font.pointSizeF() * 0.85))
        self._badge_font.setBold(True)

    def set_thumbnail_size(self, size: int) -> None:
        self.thumb = size

    def cell_size(self) -> QSize:
        return QSize(self.thumb + 2 * MARGIN, self.thumb + 2 * MARGIN + TEXT_HEIGHT)

    def sizeHint(self, option, index) -> QSize:
        return self.cell_size()

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        palette = option.palette
        cell = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(cell.adjusted(1, 1, -1, -1), palette.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(cell.adjusted(1, 1, -1, -1), palette.color(QPalette.ColorRole.Mid))
        frame = QRect(cell.x() + MARGIN, cell.y() + MARGIN, self.thumb, self.thumb)
        model = index.model()
        row = model.row_facts(index.row())
        pixmap = model.thumbnail(index.row())
        error = model.thumbnail_error(index.row())
        if pixmap is not None and not pixmap.isNull():
            size = pixmap.size()               # already at cell size: no scaling per paint
            if size.width() > frame.width() or size.height() > frame.height():
                size = size.scaled(frame.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(frame.center())
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(frame, palette.color(QPalette.ColorRole.AlternateBase))
            if error:
                self._draw_broken(painter, frame)
        if row is not None:
            self._draw_badges(painter, frame, row, error)
        if option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight).lighter(150), 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(cell.adjusted(2, 2, -2, -2))
        text_rect = QRect(cell.x() + MARGIN, frame.bottom() + 2, self.thumb, TEXT_HEIGHT - 2)
        painter.setPen(palette.color(QPalette.ColorRole.HighlightedText if selected
                                     else QPalette.ColorRole.Text))
        name = row.name.rsplit("/", 1)[-1] if row else ""
        metrics = QFontMetrics(option.font)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignCenter,
                         metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, text_rect.width()))
        painter.restore()

    # -- badges ----------------------------------------------------------------------------------
    def _draw_badges(self, painter: QPainter, frame: QRect, row, error) -> None:
        painter.setFont(self._badge_font)
        x = frame.x() + 4
        y = frame.y() + 4
        if row.positive:
            x = self._pill(painter, x, y, str(len(row.positive)), style.TAG_BADGE,
                           colours=[self.state.class_color(c) for c in row.positive[:4]])
        if row.pending:
            x = self._pill(painter, x + 3, y, f"{row.pending}?", style.PENDING_BADGE)
        if row.copies > 1:          # the same bytes under another name: a hint, not an error
            self._pill(painter, x + 3, y, f"{row.copies}×", style.DUPLICATE_BADGE)
        if row.status == "unreadable" or error:
            self._pill(painter, frame.right() - 22, y, "!", style.UNREADABLE_BADGE)
        elif row.reviewed:
            self._check(painter, QPointF(frame.right() - 12, frame.bottom() - 12))

    def _pill(self, painter: QPainter, x: int, y: int, text: str, colour: QColor,
              colours: list[QColor] | None = None) -> int:
        """A rounded badge with `text` and, after it, small dots in the given colours."""
        metrics = QFontMetrics(self._badge_font)
        height = metrics.height() + 2
        text_width = metrics.horizontalAdvance(text)
        dots = 8 * len(colours or [])
        width = max(height, text_width + 12 + dots)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(colour))
        painter.drawRoundedRect(QRectF(x, y, width, height), height / 2, height / 2)
        painter.setPen(QColor("white"))
        painter.drawText(QRectF(x + 6, y, text_width, height), Qt.AlignmentFlag.AlignCenter, text)
        for n, dot in enumerate(colours or []):
            painter.setPen(QPen(QColor("white"), 1))
            painter.setBrush(dot)
            painter.drawEllipse(QPointF(x + 6 + text_width + 6 + 8 * n, y + height / 2), 3, 3)
        return int(x + width)

    def _check(self, painter: QPainter, centre: QPointF) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(style.REVIEWED_MARK)
        painter.drawEllipse(centre, 8, 8)
        painter.setPen(QPen(QColor("white"), 2))
        painter.drawPolyline([centre + QPointF(-4, 0), centre + QPointF(-1, 3),
                              centre + QPointF(4, -3)])

    def _draw_broken(self, painter: QPainter, frame: QRect) -> None:
        painter.setPen(QPen(style.UNREADABLE_BADGE, 2))
        inner = frame.adjusted(frame.width() // 3, frame.height() // 3,
                               -frame.width() // 3, -frame.height() // 3)
        painter.drawLine(inner.topLeft(), inner.bottomRight())
        painter.drawLine(inner.topRight(), inner.bottomLeft())
