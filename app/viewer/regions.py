"""A teacher region on the image: a box in the class colour with a "class score" label that keeps
its size at any zoom. Highlighting (hover in the tag panel) thickens it; others dim."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem


class RegionLabel(QGraphicsItem):
    """The label of a region; ignores the view's zoom so it stays readable."""

    def __init__(self, text: str, colour: QColor, parent: QGraphicsItem) -> None:
        super().__init__(parent)
        self.text = text
        self.colour = colour
        self.font = QFont()
        self.font.setPointSizeF(9.0)
        self.font.setBold(True)
        metrics = QFontMetricsF(self.font)
        self._rect = QRectF(0, -metrics.height() - 2, metrics.horizontalAdvance(text) + 8,
                            metrics.height() + 2)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, _option, _widget=None) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(self.colour))
        painter.drawRect(self._rect)
        painter.setFont(self.font)
        painter.setPen(QColor("black") if self.colour.lightnessF() > 0.6 else QColor("white"))
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self.text)


class RegionItem(QGraphicsRectItem):
    """One region: `class_id`, `score`; the rect is in displayed-image pixels."""

    def __init__(self, rect: QRectF, class_id: int, name: str, score: float,
                 colour: QColor) -> None:
        super().__init__(rect)
        self.class_id = class_id
        self.score = score
        self.colour = QColor(colour)
        self.label = RegionLabel(f"{name} {score:.2f}", self.colour, self)
        self.label.setPos(rect.topLeft())
        self.setToolTip(f"{name}: teacher score {score:.3f}")
        self.set_emphasis(None)

    def set_emphasis(self, highlighted: bool | None) -> None:
        """None: normal; True: the hovered class; False: another class is hovered."""
        pen = QPen(self.colour, 4 if highlighted else 2)
        pen.setCosmetic(True)
        self.setPen(pen)
        fill = QColor(self.colour)
        fill.setAlphaF(0.22 if highlighted else 0.0)
        self.setBrush(QBrush(fill))
        self.setOpacity(0.25 if highlighted is False else 1.0)
        self.setZValue(10 + (5 if highlighted else 0) + self.score)
