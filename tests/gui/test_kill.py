"""Kill the app with SIGKILL in the middle of keyboard edits: every edit it made is stored.

"At once" is measured: each edit is committed within milliseconds of its key press (the test
prints the latency with -s), so every edit made more than half a second before the kill is in the
database, and so is every edit the window reported as stored (the tag panel only shows an edit
after that)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store
from tests.gui.projects import build_project

ROOT = Path(__file__).resolve().parents[2]


def _parse(line: str, pushed: list, stored: list) -> None:
    parts = line.split()
    if parts and parts[0] == "pushed":
        pushed.append((int(parts[1]), int(parts[2]), float(parts[3])))
    elif parts and parts[0] == "stored":
        stored.append((int(parts[1]), float(parts[2])))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_edit_loses_nothing(tmp_path):
    info = build_project(tmp_path, count=60)
    info["store"].close()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.gui.kill_child", str(info["project"]),
         str(tmp_path / "settings.ini")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pushed, stored = [], []
    try:
        deadline = time.monotonic() + 60
        while len(stored) < 10 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            _parse(line, pushed, stored)
        assert len(stored) >= 10, child.stderr.read() if child.poll() is not None else "timeout"
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)       # while it goes on editing
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    for line in child.stdout:
        _parse(line, pushed, stored)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(info["project"] / "project.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store.open(info["project"])
    try:
        def is_stored(image_id, class_id):
            return any(t.class_id == class_id and t.positive and t.source == "person"
                       for t in store.tags.for_image(image_id))

        must_have = [(i, c) for i, c, t in pushed if t < killed_at - 0.5]
        must_have += [(i, c) for i, c, _t in pushed if i in {s[0] for s in stored}]
        assert len(must_have) >= 10
        missing = [edit for edit in must_have if not is_stored(*edit)]
        assert missing == [], (missing, pushed)
        # latency from key press to "stored" as the window heard it
        latency = [s_t - p_t for (i, _c, p_t) in pushed for (j, s_t) in stored if i == j]
        print(f"edits {len(pushed)}, latency median {sorted(latency)[len(latency)//2]*1000:.1f} ms max {max(latency)*1000:.1f} ms")
        assert latency and max(latency) < 1.0, latency
    finally:
        store.close()
