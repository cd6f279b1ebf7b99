"""Reliability of opening projects (issue 15): separate files per database project (item 1),
migrations in one transaction, foreign and newer databases refused (item 2). Each test runs on
SQLite and on a real PostgreSQL server where a database is involved."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event, inspect, text

from engine.errors import UserError
from engine.store import Store
from engine.store import database as database_module


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "data-home"


def test_db_url_project_has_its_own_folder(db_url, data_home, tmp_path):
    from engine.project import default_project_dir

    with Store.open(db_url=db_url) as store:
        first = store.paths.root
        assert store.project_id and first != default_project_dir()
        assert store.project_id in str(first) and store.paths.models_dir.is_dir()
    with Store.open(db_url=db_url) as again:
        assert again.paths.root == first            # the id is stored in the database
    with Store.open(tmp_path / "files", db_url=db_url) as named:
        assert named.paths.root == tmp_path / "files"  # both options together
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    with Store.open(db_url=other) as store:
        assert store.paths.root != first


def test_cli_accepts_project_and_db_url_together(db_url, data_home, tmp_path, capsys):
    from engine.cli.main import main

    assert main(["--project", str(tmp_path / "files"), "--db-url", db_url, "init"]) == 0
    assert (tmp_path / "files" / "models").is_dir()
    assert not (tmp_path / "files" / "project.sqlite").exists()


def test_model_of_another_class_list_is_refused(tmp_path, data_home):
    torch = pytest.importorskip("torch")
    from engine.models.registry import load_model

    with Store.open(tmp_path / "p") as store:
        store.classes.ensure(["a", "b"])
        run = store.runs.create("student", {}, ["a", "b"])
        torch.save({"model": {}, "model_config": {}, "class_names": ["a", "b", "c"]},
                   store.paths.models_dir / "student-1.pt")
        store.runs.update(run.id, status="completed", checkpoint="models/student-1.pt")
        with pytest.raises(UserError, match="3 classes"):
            load_model(store, "student", "student-1", device="cpu")
        torch.save({"model": {"x": torch.zeros(1)}, "model_config": {"backbone": "resnet18"},
                    "class_names": ["a", "b"]}, store.paths.models_dir / "student-1.pt")
        with pytest.raises(UserError, match="cannot be loaded"):
            load_model(store, "student", "student-1", device="cpu")


def _fail_on(engine_, marker: str) -> None:
    def before(conn, cursor, statement, *args):  # noqa: ANN001
        if marker in statement:
            raise RuntimeError("simulated crash during init")

    event.listen(engine_, "before_cursor_execute", before)


def test_failed_init_leaves_nothing_behind(db_url, tmp_path, monkeypatch):
    real = database_module._transactional_sqlite_engine
    marker = "CREATE TABLE tags"

    def failing(url):  # noqa: ANN001
        engine_ = real(url)
        _fail_on(engine_, marker)
        return engine_

    monkeypatch.setattr(database_module, "_transactional_sqlite_engine", failing)
    if db_url.startswith("postgresql"):
        original = database_module.create_database_engine

        def failing_pg(url):  # noqa: ANN001
            engine_ = original(url)
            _fail_on(engine_, marker)
            return engine_

        monkeypatch.setattr("engine.store.create_database_engine", failing_pg)
    with pytest.raises(RuntimeError):
        Store.open(tmp_path / "files", db_url=db_url)
    monkeypatch.undo()
    from sqlalchemy import create_engine

    probe = create_engine(db_url)
    assert inspect(probe).get_table_names() == []
    probe.dispose()
    with Store.open(tmp_path / "files", db_url=db_url) as store:
        store.classes.ensure(["cat"])
        assert store.classes.names() == ["cat"]


def test_foreign_sqlite_file_is_refused_without_a_write(tmp_path):
    path = tmp_path / "p" / "project.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO accounts VALUES (1, 'x')")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(UserError, match="not an mlic project"):
        Store.open(tmp_path / "p")
    assert path.read_bytes() == before
    assert not (tmp_path / "p" / "project.sqlite-wal").exists() or \
        (tmp_path / "p" / "project.sqlite-wal").stat().st_size == 0


def test_newer_project_says_so(db_url, tmp_path):
    with Store.open(tmp_path / "f", db_url=db_url) as store:
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(UserError, match="newer version of mlic"):
        Store.open(tmp_path / "f", db_url=db_url)
