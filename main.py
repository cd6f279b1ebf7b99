"""Start the desktop app: `python main.py [--project DIR] [FOLDER]` (same as `mlic-gui`).
First checks that the system libraries Qt needs to open a window are installed, and if not,
prints the one apt line that installs them (instead of Qt's generic xcb error)."""

import sys

from app.system_check import check

if __name__ == "__main__":
    if not check():
        sys.exit(1)
    from app.main import main

    sys.exit(main())
