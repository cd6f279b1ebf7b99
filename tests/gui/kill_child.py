"""Child process of test_kill: the real window accepting suggestions by keyboard, image after
image, printing "pushed <image id> <class id> <monotonic time>" the moment each key press is
handled and "stored <image id> <time>" when the window hears back that the edit is committed. The
test kills it with SIGKILL in the middle of this and checks the database."""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def main(project: str, settings_file: str) -> None:
    app = QApplication([])
    from app.main_window import MainWindow

    settings = QSettings(settings_file, QSettings.Format.IniFormat)
    window = MainWindow(project_dir=project, settings=settings, offer_demo=False)
    window.show()
    window.state.tags_changed.connect(
        lambda ids: [print(f"stored {i} {time.monotonic():.6f}", flush=True) for i in ids])

    def step() -> None:
        panel = window.tag_panel
        current = window.gallery.current_image_id()
        if panel.detail is None or panel.detail.image_id != current or not panel.shown:
            QTimer.singleShot(5, step)            # wait for the next image's suggestions
            return
        class_id = panel.shown[0].class_id
        QTest.keyClick(window.gallery, Qt.Key.Key_1)
        print(f"pushed {current} {class_id} {time.monotonic():.6f}", flush=True)
        QTest.keyClick(window.gallery, Qt.Key.Key_J)
        QTimer.singleShot(5, step)

    QTimer.singleShot(50, step)
    app.exec()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
