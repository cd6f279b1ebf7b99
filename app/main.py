"""Entry point of the desktop app: `mlic-gui [--project DIR] [--db-url URL] [FOLDER]` (also
`python main.py`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ORGANIZATION = "mlic"
APPLICATION = "mlic-gui"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlic-gui", description="Curate image-level multi-label tags with model assistance.")
    parser.add_argument("--project", metavar="DIR",
                        help="project folder (default: the last one opened, else the default "
                             "project in your data directory)")
    parser.add_argument("--db-url", metavar="URL",
                        help="SQLAlchemy database URL of a shared project database, e.g. "
                             "postgresql+psycopg://user@host/db (models and caches: --project)")
    parser.add_argument("folder", nargs="?", metavar="FOLDER",
                        help="a folder of images to add to the project on start")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.system_check import check

    if QApplication.instance() is None and not check():
        return 1
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("mlic")

    from app.icons import icon
    from app.main_window import MainWindow
    from app.style import apply_style, follow_system_scheme

    app.setWindowIcon(icon("mlic"))
    settings = QSettings()
    apply_style(app, str(settings.value("theme", "system")))
    follow_system_scheme(app, lambda: str(settings.value("theme", "system")))
    window = MainWindow(project_dir=args.project, folder=args.folder, settings=settings,
                        db_url=args.db_url)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
