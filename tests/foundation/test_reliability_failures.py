"""Failures of the machine (issue 15, item 13): a full disk during `add-folder` and a damaged
project database end in one `mlic: error:` line, never a traceback, and nothing the project held
before is lost (a full disk: on SQLite and PostgreSQL). A read-only project still answers
`mlic status` (item 14)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

from engine.cli.main import main
from engine.store import Store

from .reliability_helpers import snapshot, write_images


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    return tmp_path / "data-home"


def _one_error_line(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlic: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _project(db_url: str, tmp_path, capsys) -> list[str]:  # noqa: ANN001
    files = str(tmp_path / "files")
    args = ["--project", files, "--db-url", db_url]
    assert main([*args, "init"]) == 0
    write_images(tmp_path / "old", ["a.png", "b.png"])
    assert main([*args, "add-folder", str(tmp_path / "old")]) == 0
    assert main([*args, "classes", "--add", "cat"]) == 0
    write_images(tmp_path / "new", [f"{'long-name-' * 12}{k}.png" for k in range(60)])
    capsys.readouterr()
    return args


def _dbapi_disk_full(dialect: str) -> Exception:
    if dialect == "sqlite":
        import sqlite3

        return sqlite3.OperationalError("database or disk is full")
    import psycopg

    return psycopg.errors.DiskFull('could not extend file "base/1/2": No space left on device')


def _assert_kept(before: dict, db_url: str, files) -> None:  # noqa: ANN001
    with Store.open(files, db_url=db_url) as store:
        after = snapshot(store)
    for table, rows in before.items():
        assert set(rows) <= set(after[table]), table


def test_full_disk_during_add_folder_is_one_line(db_url, tmp_path, capsys, monkeypatch, data_home):
    args = _project(db_url, tmp_path, capsys)
    with Store.open(args[1], db_url=db_url) as store:
        before = snapshot(store)
    import engine.store as store_module

    real = store_module.create_database_engine

    def full_disk_engine(url):  # noqa: ANN001
        engine_ = real(url)

        def before_execute(conn, cursor, statement, *rest):  # noqa: ANN001
            if statement.lstrip().upper().startswith("INSERT INTO IMAGES"):
                raise _dbapi_disk_full(engine_.dialect.name)

        event.listen(engine_, "before_cursor_execute", before_execute)
        return engine_

    monkeypatch.setattr(store_module, "create_database_engine", full_disk_engine)
    assert main([*args, "add-folder", str(tmp_path / "new")]) == 2
    assert "disk is full" in _one_error_line(capsys)
    monkeypatch.setattr(store_module, "create_database_engine", real)
    _assert_kept(before, db_url, args[1])
    assert main([*args, "add-folder", str(tmp_path / "new")]) == 0   # space freed: it completes
    with Store.open(args[1], db_url=db_url) as store:
        assert store.images.count() == 62


def test_full_disk_os_error_is_one_line(db_url, tmp_path, capsys, monkeypatch, data_home):
    args = _project(db_url, tmp_path, capsys)
    import engine.intake as intake

    def no_space(*_args, **_kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "files"))

    monkeypatch.setattr(intake, "_write", no_space)
    assert main([*args, "add-folder", str(tmp_path / "new")]) == 2
    assert "disk is full" in _one_error_line(capsys)


def test_sqlite_file_that_fills_up_is_one_line(tmp_path, capsys, monkeypatch, data_home):
    """A real SQLITE_FULL: the database may not grow past its current size."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = _project(url, tmp_path, capsys)
    with Store.open(args[1], db_url=url) as store:
        before = snapshot(store)
        pages = store.engine.connect().exec_driver_sql("PRAGMA page_count").scalar()
    import engine.store.database as database

    real_pragmas = database._enable_sqlite_pragmas

    def capped(dbapi_connection, record):  # noqa: ANN001
        real_pragmas(dbapi_connection, record)
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(database, "_enable_sqlite_pragmas", capped)
    assert main([*args, "add-folder", str(tmp_path / "new")]) == 2
    assert "disk is full" in _one_error_line(capsys)
    monkeypatch.setattr(database, "_enable_sqlite_pragmas", real_pragmas)
    _assert_kept(before, url, args[1])


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_damaged_database_is_one_line_and_left_as_it_is(tmp_path, capsys, damage, data_home):
    project = tmp_path / "p"
    assert main(["--project", str(project), "init"]) == 0
    assert main(["--project", str(project), "classes", "--add", "cat", "dog"]) == 0
    database = project / "project.sqlite"
    data = bytearray(database.read_bytes())
    if damage == "header":
        data[:100] = b"\x00garbage" * 12 + b"....."
    else:
        import random

        data[2 * 4096:5 * 4096] = random.Random(15).randbytes(3 * 4096)  # the tables, not the schema
    database.write_bytes(bytes(data))
    capsys.readouterr()
    for command in (["status"], ["classes", "--add", "bird"], ["export", "csv",
                                                                  str(tmp_path / "out.csv")]):
        assert main(["--project", str(project), *command]) == 2, command
        line = _one_error_line(capsys)
        assert "damaged" in line or "not a database" in line or "malformed" in line, line
    assert database.read_bytes() == bytes(data)


def _as_unprivileged(argv: list[str]) -> list[str]:
    """Root reads and writes whatever the permissions say: drop the capabilities that let it."""
    import shutil

    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", "--bounding-set", caps, *argv]


def test_read_only_project_still_has_status(tmp_path, data_home):
    project = tmp_path / "p"
    write_images(tmp_path / "photos", ["a.png", "b.png"])
    assert main(["--project", str(project), "init"]) == 0
    assert main(["--project", str(project), "add-folder", str(tmp_path / "photos")]) == 0
    assert main(["--project", str(project), "classes", "--add", "cat"]) == 0
    files = sorted(project.rglob("*"))
    before = {path: path.read_bytes() for path in files if path.is_file()}
    for path in [*files, project]:
        path.chmod(path.stat().st_mode & ~0o222)
    mlic = [sys.executable, "-m", "engine", "--project", str(project)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        status = subprocess.run(_as_unprivileged([*mlic, "status"]), capture_output=True,
                                text=True, env=env, timeout=120)
        assert status.returncode == 0, status.stderr
        assert "Images: 2" in status.stdout and "cat" in status.stdout
        write = subprocess.run(_as_unprivileged([*mlic, "classes", "--add", "dog"]),
                               capture_output=True, text=True, env=env, timeout=120)
        assert write.returncode == 2 and "Traceback" not in write.stderr
        assert write.stderr.startswith("mlic: error: ") and "read-only" in write.stderr
        assert len(write.stderr.strip().splitlines()) == 1
    finally:
        for path in [project, *files]:
            path.chmod(path.stat().st_mode | 0o200)
    assert sorted(project.rglob("*")) == files
    assert {path: path.read_bytes() for path in files if path.is_file()} == before
