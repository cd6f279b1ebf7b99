"""The large image view: QGraphicsView with wheel zoom around the cursor, drag to pan, fit to
window, and the teacher's regions as `RegionItem`s."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from app.viewer.regions import RegionItem
from engine.store.queries import RegionInfo

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 40.0


class ImageView(QGraphicsView):
    """`zoom_changed(factor)` fires when the zoom changes (1.0 = one image pixel per screen pixel
    of the *loaded* image)."""

    zoom_changed = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing
                            | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setToolTip("Wheel: zoom · drag: pan · double-click: fit / 100%")
        self._pixmap_item: QGraphicsPixmapItem | None = None
        self._regions: list[RegionItem] = []
        self._scale_to_view = (1.0, 1.0)
        self._fit = True
        self._message = ""

    # -- content ---------------------------------------------------------------------------------
    def clear(self, message: str = "") -> None:
        self.scene().clear()
        self._pixmap_item = None
        self._regions = []
        self._message = message
        self.viewport().update()

    def set_image(self, image: QImage, original_size: tuple[int, int] | None) -> None:
        """Show `image`; regions given in original pixels map through `original_size`."""
        self.clear()
        self._pixmap_item = self.scene().addPixmap(QPixmap.fromImage(image))
        self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().setSceneRect(QRectF(image.rect()))
        ow, oh = original_size or (image.width(), image.height())
        self._scale_to_view = (image.width() / max(ow, 1), image.height() / max(oh, 1))
        self.fit()

    def has_image(self) -> bool:
        return self._pixmap_item is not None

    def set_regions(self, regions: Iterable[RegionInfo], names: dict[int, str],
                    colours: dict[int, QColor]) -> None:
        for item in self._regions:
            self.scene().removeItem(item)
        self._regions = []
        sx, sy = self._scale_to_view
        for region in regions:
            rect = QRectF(region.x * sx, region.y * sy, region.w * sx, region.h * sy)
            item = RegionItem(rect, region.class_id, names.get(region.class_id, "?"),
                              region.score, colours.get(region.class_id, QColor("#888888")))
            self.scene().addItem(item)
            self._regions.append(item)

    def regions(self) -> list[RegionItem]:
        return list(self._regions)

    def filter_regions(self, hidden: set[int], min_score: float, show: bool = True,
                       best_only: bool = False) -> None:
        """Show regions of the classes not hidden, scoring at least `min_score`; with
        `best_only`, only each class's best region."""
        best: dict[int, RegionItem] = {}
        for item in self._regions:
            if item.class_id not in best or item.score > best[item.class_id].score:
                best[item.class_id] = item
        for item in self._regions:
            item.setVisible(show and item.class_id not in hidden and item.score >= min_score
                            and (not best_only or best[item.class_id] is item))

    def highlight(self, class_id: int | None) -> None:
        for item in self._regions:
            item.set_emphasis(None if class_id is None else item.class_id == class_id)

    # -- zoom ------------------------------------------------------------------------------------
    def zoom_factor(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self._fit = True
        if self._pixmap_item is not None:
            self.fitInView(self._pixmap_item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.zoom_factor())

    def zoom_by(self, factor: float) -> None:
        current = self.zoom_factor()
        factor = min(max(current * factor, MIN_ZOOM), MAX_ZOOM) / current
        self._fit = False
        self.scale(factor, factor)
        self.zoom_changed.emit(self.zoom_factor())

    def actual_size(self) -> None:
        self._fit = False
        self.resetTransform()
        self.zoom_changed.emit(1.0)

    def wheelEvent(self, event) -> None:
        if self._pixmap_item is None:
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(ZOOM_STEP ** steps)

    def mouseDoubleClickEvent(self, event) -> None:
        if self._fit:
            self.actual_size()
        else:
            self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self._message and self._pixmap_item is None:
            painter.save()
            painter.resetTransform()
            painter.setPen(self.palette().color(self.foregroundRole()))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            painter.restore()
