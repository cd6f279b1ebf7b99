"""GUI tests run offscreen with pytest-qt."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
