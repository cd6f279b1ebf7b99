"""The rows of the tag panel: a suggestion (number key, colour, class, confidence bar, accept /
reject) and a confirmed tag or recorded "not" (a chip with its source and a remove button)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QToolButton,
)

from app.elided import ElidedLabel


def confidence_text(value: float) -> str:
    """Enough decimals that a small value never reads as 0.00."""
    return f"{value:.2f}" if value >= 0.095 or value == 0 else f"{value:.3f}"


def _swatch(colour: str) -> QLabel:
    label = QLabel()
    label.setFixedSize(12, 12)
    label.setStyleSheet(f"background:{colour}; border-radius:6px;")
    return label


class SuggestionRow(QFrame):
    """One suggestion: number key, colour, class, confidence bar, accept / reject buttons."""

    hovered = Signal(int)            # class id, or -1 when the pointer leaves
    accept = Signal(int)
    reject = Signal(int)
    clicked = Signal(int)

    def __init__(self, number: int, info, confidence: float, threshold: float,
                 below: bool) -> None:
        super().__init__()
        self.class_id = info.class_id
        self.setObjectName("suggestionRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMouseTracking(True)
        key = QLabel(str(number) if number <= 9 else "")
        key.setFixedWidth(14)
        name = ElidedLabel(info.name)          # a long name ends in "…", whole in its tooltip
        name.setMinimumWidth(30)
        bar = QProgressBar(minimum=0, maximum=1000, value=int(confidence * 1000), textVisible=False)
        bar.setFixedHeight(10)
        bar.setMinimumWidth(24)
        bar.setStyleSheet(f"QProgressBar::chunk {{ background: {info.color}; }}")
        value = QLabel(confidence_text(confidence))
        value.setToolTip(f"Student confidence {confidence:.3f}; class threshold {threshold:.3f}")
        ok = QToolButton(text="✓", toolTip="Accept: add this tag (number key)")
        no = QToolButton(text="✗", toolTip="Reject: record that this class is not present (Delete)")
        for button in (ok, no):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setAutoRaise(True)
        ok.clicked.connect(lambda: self.accept.emit(self.class_id))
        no.clicked.connect(lambda: self.reject.emit(self.class_id))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 1, 2, 1)
        layout.addWidget(key)
        layout.addWidget(_swatch(info.color))
        layout.addWidget(name, 3)
        layout.addWidget(bar, 2)
        layout.addWidget(value)
        layout.addWidget(ok)
        layout.addWidget(no)
        if below:
            self.setEnabled(True)
            name.setStyleSheet("color: gray;")
        self.set_current(False)

    def set_current(self, current: bool) -> None:
        self.setProperty("current", current)
        self.setStyleSheet("#suggestionRow { border: 1px solid palette(highlight); }" if current
                           else "#suggestionRow { border: 1px solid transparent; }")

    def enterEvent(self, event) -> None:
        self.hovered.emit(self.class_id)
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self.hovered.emit(-1)
        super().leaveEvent(event)

    def mousePressEvent(self, event) -> None:
        self.clicked.emit(self.class_id)
        super().mousePressEvent(event)


class TagChip(QFrame):
    """A confirmed tag (or a recorded "not") with a remove button."""

    remove = Signal(int)
    hovered = Signal(int)

    def __init__(self, info, positive: bool, detail: str) -> None:
        super().__init__()
        self.class_id = info.class_id
        self.setObjectName("tagChip")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(_swatch(info.color))
        text = ElidedLabel(info.name if positive else f"not {info.name}")
        text.setMinimumWidth(30)
        if not positive:
            text.setStyleSheet("color: gray; text-decoration: line-through;")
        layout.addWidget(text, 2)
        source = QLabel(detail)
        source.setStyleSheet("color: gray;")
        source.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        source.setMinimumWidth(20)
        source.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(source, 2)
        button = QToolButton(text="×", toolTip="Remove this tag (undoable)", autoRaise=True)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(lambda: self.remove.emit(self.class_id))
        layout.addWidget(button)

    def enterEvent(self, event) -> None:
        self.hovered.emit(self.class_id)

    def leaveEvent(self, event) -> None:
        self.hovered.emit(-1)
