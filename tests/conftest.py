"""Shared fixtures.

- `demo_data` (session): the project's demo data, 120 images (seed 0), generated once per test
  session into a temporary folder. A `engine.demo.DemoDataset`; treat its files as read-only.
- `demo_project` (function): a fresh `Store` in `tmp_path / "project"` with `demo_data` imported
  (splits train/val/test set, image-level tags with source 'import', ground-truth boxes).
- `empty_project` (function): a fresh, empty `Store` in `tmp_path / "project"`.
"""

from __future__ import annotations

import os

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
