"""What a killed process leaves behind (issue 15, item 14): the temporary file of a checkpoint
write cut by kill -9 is removed by the next write or open, never a live writer's; a run killed
before its first checkpoint is ended ('failed', which `train --resume` picks up) when the
project is next opened by any process, if the run's process on this host is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.files import atomic_output, clean_stale_temporaries
from engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
_WRITER = """
import os, signal, sys, time
from engine.files import atomic_output
with atomic_output(sys.argv[1], "wb", durable=True) as file:
    file.write(b"x" * 1_000_000)
    file.flush()
    print("writing", flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def _writer(target: Path, how: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), how],
                               stdout=subprocess.PIPE, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None and process.stdout.readline().strip() == b"writing"
    return process


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def test_checkpoint_temporary_of_a_killed_write_is_removed(tmp_path):
    with Store.open(tmp_path / "p") as store:
        models = store.paths.models_dir
    killed = _writer(models / "teacher-3.pt", "kill")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert len(_temporaries(models)) == 1                      # what kill -9 leaves
    Store.open(tmp_path / "p").close()                         # the next open removes it
    assert _temporaries(models) == []

    killed = _writer(models / "student-4.pt", "kill")
    killed.wait(timeout=60)
    subprocess.run([sys.executable, "-c", "import sys; from engine.files import write_text_atomic;"
                    " write_text_atomic(sys.argv[1], 'x')", str(models / "other.json")],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert _temporaries(models) == []                          # so does the next write there
    assert not (models / "student-4.pt").exists()


def test_a_live_writers_temporary_is_kept(tmp_path):
    live = _writer(tmp_path / "teacher-1.pt", "sleep")
    try:
        assert clean_stale_temporaries(tmp_path) == []
        with atomic_output(tmp_path / "other.pt", "wb") as file:
            file.write(b"y")
            assert len(_temporaries(tmp_path)) == 2            # the live one and our own
        assert len(_temporaries(tmp_path)) == 1
    finally:
        live.kill()
        live.wait(timeout=60)
    assert [path.name for path in clean_stale_temporaries(tmp_path)][0].startswith(".teacher-1")


def test_an_old_unnamed_temporary_is_removed(tmp_path):
    old = tmp_path / ".teacher-2.pt.abcd_123.tmp"
    old.write_bytes(b"x")
    recent = tmp_path / ".teacher-5.pt.efgh_456.tmp"
    recent.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert clean_stale_temporaries(tmp_path) == [old]
    assert recent.exists()


_TRAINER = """
import os, signal, sys
from engine.store import Store
store = Store.open(db_url=sys.argv[1], project_dir=sys.argv[2])
run = store.runs.create("teacher", {}, ["a"])
print(run.id, flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()
"""


def _trainer(db_url: str, files: Path, how: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", _TRAINER, db_url, str(files), how],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def test_run_killed_before_its_first_checkpoint_is_ended_on_next_open(db_url, tmp_path):
    files = tmp_path / "files"
    Store.open(files, db_url=db_url).close()
    killed, killed_id = _trainer(db_url, files, "kill")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    live, live_id = _trainer(db_url, files, "wait")
    try:
        with Store.open(files, db_url=db_url) as store:
            assert store.runs.get(killed_id).status == "failed"      # no longer 'running' for ever
            assert store.runs.get(killed_id).finished_at is not None
            assert store.runs.get(live_id).status == "running"       # its process still runs it
            legacy = store.runs.create("student", {}, ["a"])
            store.runs.update(legacy.id, status="running")
        with Store.open(files, db_url=db_url) as store:
            assert store.runs.get(legacy.id).status == "running"     # this process: alive
    finally:
        live.kill()
        live.wait(timeout=60)
    with Store.open(files, db_url=db_url) as store:
        assert store.runs.get(live_id).status == "failed"


def test_a_run_of_another_host_is_left_running(db_url, tmp_path):
    from sqlalchemy import update

    from engine.store.schema import TrainingRun

    with Store.open(tmp_path / "files", db_url=db_url) as store:
        run = store.runs.create("teacher", {}, ["a"])
        with store.engine.begin() as connection:
            connection.execute(update(TrainingRun).values(owner="elsewhere:1:1"))
    with Store.open(tmp_path / "files", db_url=db_url) as store:
        assert store.runs.get(run.id).status == "running"
