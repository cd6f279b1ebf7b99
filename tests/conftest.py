"""Shared fixtures.

- `demo_data` (session): the project's demo data, 120 images (seed 0), generated once per test
  session into a temporary folder. A `engine.demo.DemoDataset`; treat its files as read-only.
- `demo_project` (function): a fresh `Store` in `tmp_path / "project"` with `demo_data` imported
  (splits train/val/test set, image-level tags with source 'import', ground-truth boxes).
- `empty_project` (function): a fresh, empty `Store` in `tmp_path / "project"`.
- `postgres` (session): a throwaway PostgreSQL server (`tests/postgres.py`); skips when the server
  binaries or psycopg are missing, and fails instead with `MLIC_TEST_POSTGRES=required` (CI).
- `backend` (function, parametrised `sqlite` / `postgresql`): a `Backend`, a fresh empty database of
  that kind (a project folder's own SQLite file, or a new database on the throwaway server) and the
  folder of its models and caches; the postgresql case skips without the server. The store, intake,
  exchange and review tests take their project from it (`backend_project`, `backend_demo_project`),
  so they run against both databases.
- `db_url` (function): `backend.url`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEMO_IMAGES = 120
DEMO_SEED = 0


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    from engine.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo"), n_images=DEMO_IMAGES, seed=DEMO_SEED)


@pytest.fixture
def empty_project(tmp_path):
    from engine.store import Store

    store = Store.open(tmp_path / "project")
    yield store
    store.close()


@pytest.fixture
def demo_project(tmp_path, demo_data):
    from engine.demo import import_demo
    from engine.store import Store

    store = Store.open(tmp_path / "project")
    import_demo(store, demo_data.root)
    yield store
    store.close()


@pytest.fixture(scope="session")
def postgres():
    from tests.postgres import find_binaries, start_server

    if find_binaries() is None:
        if os.environ.get("MLIC_TEST_POSTGRES") == "required":  # CI installed it: never skip
            pytest.fail("MLIC_TEST_POSTGRES=required but no PostgreSQL server binaries or psycopg")
        pytest.skip("PostgreSQL server binaries or psycopg are not installed")
    folder = Path(tempfile.mkdtemp(prefix="mlic-pg-", dir="/tmp"))
    server = start_server(folder / "cluster")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Backend:
    """A fresh project database of one kind: `url`, and `files`, the folder of its models."""

    name: str
    url: str
    files: Path

    def open(self):  # noqa: ANN201 - a Store; the store is imported late, as in every fixture
        from engine.store import Store

        if self.name == "sqlite":  # the ordinary project folder, exactly as the app opens it
            return Store.open(self.files)
        return Store.open(self.files, db_url=self.url)

    def cli_args(self) -> list[str]:
        """The `mlic` options that open this project."""
        extra = [] if self.name == "sqlite" else ["--db-url", self.url]
        return ["--project", str(self.files), *extra]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    files = tmp_path / "project"
    if request.param == "sqlite":
        files.mkdir()
        return Backend("sqlite", f"sqlite:///{files / 'project.sqlite'}", files)
    return Backend("postgresql", request.getfixturevalue("postgres").new_database(), files)


@pytest.fixture
def backend_project(backend):
    store = backend.open()
    yield store
    store.close()


@pytest.fixture
def backend_demo_project(backend, demo_data):
    from engine.demo import import_demo

    store = backend.open()
    import_demo(store, demo_data.root)
    yield store
    store.close()


@pytest.fixture
def db_url(backend) -> str:
    return backend.url
