"""Work-around for a reference-counting bug of the Qt binding on Python < 3.12.

PySide6 6.12 hands some singletons to Python without taking a reference to them: `None` for an
invalid QVariant (e.g. `QModelIndex.data(role)` with no data) and `True`/`False` passed through a
signal (`Signal(bool)`, or `Signal(object)` carrying a bool, e.g. `QAbstractButton.toggled`). Every
such call drops one reference. On Python 3.12+ these objects are immortal and nothing happens; on
3.11 the count reaches zero after some thousands of calls and the interpreter aborts ("Fatal
Python error: none_dealloc" / "bool_dealloc"), e.g. after seconds of scrolling a model view.
`tests/gui/test_compat.py` shows the bug and that the guard holds.

The app keeps such calls off its hot paths (the gallery delegate calls the model's Python
methods; worker results travel as `Signal(int, object)`); for the rest, `pin_singletons()` gives
`None`, `True` and `False` a very large reference count once at start-up, which is what Python
3.12 does for every immortal object.
"""

from __future__ import annotations

import ctypes
import sys

_PINNED = 1 << 40


def pin_singletons() -> None:
    """Make `None`, `True` and `False` effectively immortal on Python < 3.12 (idempotent)."""
    if sys.version_info >= (3, 12) or getattr(pin_singletons, "done", False):
        return
    for singleton in (None, True, False):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))
        refcount.value += _PINNED
    pin_singletons.done = True
