"""The keyboard shortcut sheet (press ?): every shortcut of the window, grouped, plus the class
keys the user assigned in the classes dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QScrollArea,
    QVBoxLayout,
)

from engine.store import search

# Keys handled outside QActions (by the gallery and the viewer themselves), or summarised.
EXTRA = [
    ("Review", "1 … 9", "Accept the suggestion with that number"),
    ("Gallery", "Up / Down", "Move one row in the grid"),
    ("Gallery", "Shift+click, Ctrl+click", "Extend the selection"),
    ("Viewer", "Wheel", "Zoom around the pointer"),
    ("Viewer", "Drag", "Pan"),
    ("Viewer", "Double-click", "Fit / actual size"),
    ("Anywhere", "Drop a folder", "Add it to the project"),
] + [("Search language (Ctrl+F)", example, meaning) for example, meaning in search.SYNTAX]


def _typable(text: str) -> bool:
    """Keys a person can type: skip platform aliases such as 'Undo', 'Find' or 'F14'."""
    if "+" in text or len(text) <= 5 and not text.isalpha():
        return not (text.startswith("F") and text[1:].isdigit() and int(text[1:]) > 12)
    return len(text) == 1 or text in ("Space", "Del", "Delete", "Return", "Esc")


def _keys(action: QAction) -> str:
    texts = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()]
    return ", ".join(t for t in texts if _typable(t))


def sheet_html(groups: dict[str, list[QAction]], class_keys: list[tuple[str, str]]) -> str:
    """HTML tables of (keys, what they do) per group."""
    rows: dict[str, list[tuple[str, str]]] = {}
    for group, actions in groups.items():
        for action in actions:
            keys = _keys(action)
            if keys:
                text = action.text().replace("&", "")
                rows.setdefault(group, []).append((keys, action.statusTip() or text))
    for group, keys, text in EXTRA:
        rows.setdefault(group, []).append((keys, text))
    if class_keys:
        rows["Class keys (toggle the tag on the selection)"] = class_keys
    parts = []
    for group, entries in rows.items():
        parts.append(f"<h3>{group}</h3><table cellspacing='0' cellpadding='3'>")
        for keys, text in entries:
            parts.append(f"<tr><td style='padding-right:18px'><b><code>{_escape(keys)}</code></b>"
                         f"</td><td>{_escape(text)}</td></tr>")
        parts.append("</table>")
    return "".join(parts)


class ShortcutSheet(QDialog):
    def __init__(self, html: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("shortcutSheet")
        self.resize(560, 640)
        label = QLabel(html)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignTop)
        label.setMargin(8)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        layout.addWidget(buttons)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
