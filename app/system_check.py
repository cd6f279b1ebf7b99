"""Before the first window: are the system libraries Qt's xcb platform plugin needs installed?
Without them Qt aborts with a generic "could not load the Qt platform plugin xcb"; this says
instead exactly what to install, as one apt line. Imports no Qt (it must run before Qt loads)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> Debian/Ubuntu package, for what PySide6's xcb plugin and QtGui link against.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xinput.so.0": "libxcb-xinput0", "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0", "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3",
    "libSM.so.6": "libsm6", "libICE.so.6": "libice6",
}
# What the README lists: the xcb plugin's usual set on a bare Debian/Ubuntu.
README_PACKAGES = ("libegl1", "libgl1", "libfontconfig1", "libdbus-1-3", "libxkbcommon-x11-0",
                   "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
                   "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xinerama0",
                   "libxcb-xkb1")
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def qt_libraries() -> list[Path]:
    """PySide6's QtGui, QtWidgets and the xcb plugin with its QPA library (found, not imported)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    candidates = [qt / "plugins" / "platforms" / "libqxcb.so",
                  qt / "lib" / "libQt6XcbQpa.so.6", qt / "lib" / "libQt6Gui.so.6",
                  qt / "lib" / "libQt6Widgets.so.6"]
    return [path for path in candidates if path.exists()]


def missing_libraries(libraries: list[Path] | None = None, ldd: str | None = None) -> list[str]:
    """Sonames the Qt libraries need that the dynamic loader cannot find (empty: all there, or
    nothing to check with)."""
    ldd = ldd or shutil.which("ldd")
    if ldd is None:
        return []
    missing: list[str] = []
    for library in libraries if libraries is not None else qt_libraries():
        try:
            output = subprocess.run([ldd, str(library)], capture_output=True, text=True,
                                    timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        missing += [name for name in _NOT_FOUND.findall(output) if name not in missing]
    return missing


def apt_line(missing: list[str]) -> str:
    packages = sorted({PACKAGES.get(name, name) for name in missing})
    return "sudo apt-get install " + " ".join(packages)


def needs_xcb() -> bool:
    """Whether Qt will load the xcb plugin: Linux, no other platform asked for."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    return sys.platform.startswith("linux") and platform in ("", "xcb")


def check(stream=sys.stderr) -> bool:
    """True when the app can start; otherwise print what to install and return False."""
    if not needs_xcb():
        return True
    missing = missing_libraries()
    if not missing:
        return True
    print("mlic: Qt cannot open a window: these system libraries are missing:\n  "
          + " ".join(missing) + "\nInstall them with:\n  " + apt_line(missing)
          + "\n(see README, 'System libraries'); or run headless with QT_QPA_PLATFORM=offscreen.",
          file=stream)
    return False


if __name__ == "__main__":
    sys.exit(0 if check() else 1)
