"""GUI tests run offscreen with pytest-qt and drive the real main window."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from tests.gui.projects import build_project  # noqa: E402


@pytest.fixture(autouse=True)
def garbage_on_the_gui_thread():
    """The app collects garbage on a GUI-thread timer only (app.gui_gc); between tests, collect
    here, on the main thread, so nothing waits for a worker thread to do it."""
    yield
    import gc

    gc.collect()


@pytest.fixture
def errors(monkeypatch):
    """Dialogs answered without a modal loop; errors recorded instead of shown."""
    from app import dialogs

    shown: list[BaseException] = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, exc, title="mlic": shown.append(exc))
    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: True)
    monkeypatch.setattr(dialogs, "inform", lambda *a, **k: None)
    return shown


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def project(tmp_path):
    info = build_project(tmp_path, count=12)
    yield info
    info["store"].close()


def open_window(qtbot, project_dir, settings, **kwargs):
    from app.main_window import MainWindow

    window = MainWindow(project_dir=project_dir, settings=settings, offer_demo=False, **kwargs)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    return window


@pytest.fixture
def window(qtbot, project, settings, errors):
    """The main window on a 12-image project with a fake active teacher and student, the first
    image selected and its suggestions shown."""
    window = open_window(qtbot, project["project"], settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 12, timeout=30000)
    qtbot.waitUntil(lambda: len(window.tag_panel.shown) == 2, timeout=30000)
    yield window
    window.close()
    assert errors == []
