"""Shared fixtures.

- `demo_data` (session): the project's demo data, 120 images (seed 0), generated once per test
  session into a temporary folder. A `engine.demo.DemoDataset`; treat its files as read-only.
- `demo_project` (function): a fresh `Store` in `tmp_path / "project"` with `demo_data` imported
  (splits train/val/test set, image-level tags with source 'import', ground-truth boxes).
- `empty_project` (function): a fresh, empty `Store` in `tmp_path / "project"`.
- `postgres` (session): a throwaway PostgreSQL server (`tests/postgres.py`); skips when the server
  binaries or psycopg are missing.
- `db_url` (function, parametrised `sqlite` / `postgresql`): the URL of a fresh, empty database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
        pytest.skip("PostgreSQL server binaries or psycopg are not installed")
    folder = Path(tempfile.mkdtemp(prefix="mlic-pg-", dir="/tmp"))
    server = start_server(folder / "cluster")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres").new_database()
