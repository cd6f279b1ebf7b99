"""One factory for actions (labelme's `new_action`): text, slot, shortcuts, tooltip, checkable."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


def new_action(parent: QWidget, text: str, slot: Callable | None = None,
               shortcuts: str | QKeySequence | Sequence[str | QKeySequence] | None = None,
               tip: str | None = None, checkable: bool = False, checked: bool = False,
               window_wide: bool = True) -> QAction:
    """An action on `parent`; with `window_wide` its shortcuts work wherever the focus is in the
    window (text fields still receive the keys they type)."""
    action = QAction(text, parent)
    if shortcuts is not None:
        if isinstance(shortcuts, (str, QKeySequence, QKeySequence.StandardKey)):
            shortcuts = [shortcuts]
        sequences = []
        for shortcut in shortcuts:
            if isinstance(shortcut, QKeySequence.StandardKey):
                sequences.extend(QKeySequence.keyBindings(shortcut))
            else:
                sequences.append(QKeySequence(shortcut))
        action.setShortcuts(sequences)
        if window_wide:
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                         for k in action.shortcuts())
        action.setToolTip(f"{tip} ({keys})" if keys else tip)
        action.setStatusTip(tip)
    if checkable:
        action.setCheckable(True)
        action.setChecked(checked)
        if slot is not None:
            action.toggled.connect(slot)
    elif slot is not None:
        action.triggered.connect(lambda _checked=False: slot())
    parent.addAction(action)
    return action
