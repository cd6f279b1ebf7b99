"""PySide6 6.12.0 on Python 3.11 hands `None` (an invalid QVariant) and `True`/`False` (through
`Signal(bool)`) to Python without taking a reference; after some thousands of calls the interpreter
aborts ("none_dealloc" / "bool_dealloc"), e.g. while scrolling the gallery. pyproject.toml pins the
binding below 6.12; this test fails if an installed binding has the bug again."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, Qt, Signal
from PySide6.QtWidgets import QApplication
app = QApplication([])
class Model(QAbstractListModel):
    def rowCount(self, parent=QModelIndex()): return 1
    def data(self, index, role=Qt.ItemDataRole.DisplayRole): return None
class Emitter(QObject):
    flag = Signal(bool)
model = Model()
index = model.index(0, 0)
emitter = Emitter()
received = []
emitter.flag.connect(received.append)
for n in range(60_000):
    index.data(Qt.ItemDataRole.UserRole)
    emitter.flag.emit(n % 2 == 0)
    if len(received) > 1000:
        received.clear()
print("survived")
"""


def test_binding_keeps_references_to_none_and_bools():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=120)
    assert "survived" in result.stdout, result.stderr[-2000:]
