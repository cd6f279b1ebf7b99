"""Start the desktop app: `python main.py [--project DIR] [FOLDER]` (same as `mlic-gui`)."""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
