"""The binding bug that app._compat guards against, and the guard."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
{guard}
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


def run(guard: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(guard=guard)],
                          capture_output=True, text=True, timeout=120)


def test_guard_keeps_the_interpreter_alive():
    result = run("import app")
    assert "survived" in result.stdout, result.stderr[-2000:]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal on 3.12+")
def test_the_bug_is_real_without_the_guard():
    """Documents the bug; skips once the installed binding no longer has it."""
    result = run("")
    if result.returncode == 0:
        pytest.skip("this PySide6 no longer drops references to None/True/False: "
                    "app._compat can go")
    assert "_dealloc" in result.stderr
