"""Projects for the review-loop GUI tests: the shared 120-image demo data imported into a fresh
project, optionally with tiny students really trained on it (1 epoch, 32 px, tags only), built
once per test session and copied for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY = {"stage": "student", "kd": "none", "student_backbone": "resnet18", "pretrained": False,
        "student_image_size": 32,
        "epochs": 1, "batch_size": 16, "device": "cpu", "num_workers": 0}


def tiny_config(**overrides):
    from engine.training import TrainConfig

    return TrainConfig(**{**TINY, **overrides})


def _import(root: Path, demo_data) -> Path:
    from engine.demo import import_demo
    from engine.store import Store

    store = Store.open(root)
    import_demo(store, demo_data.root)
    store.close()
    return root


# Each test module imports these fixtures, which makes a separate session fixture per module:
# the folders are kept here so that a test session builds each one once.
_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def demo_project_dir(tmp_path_factory, demo_data) -> Path:
    """A project folder with the demo data imported (do not modify: copy it)."""
    if "demo" not in _BUILT:
        _BUILT["demo"] = _import(tmp_path_factory.mktemp("loop") / "demo-project", demo_data)
    return _BUILT["demo"]


@pytest.fixture(scope="session")
def trained_project_dir(tmp_path_factory, demo_data) -> Path:
    """The demo project with two tiny student rounds (student-1 from scratch, student-2 warm
    started after one person edit), each evaluated on the validation split."""
    from engine.review.rounds import train_round
    from engine.store import Store, TagEdit

    if "trained" in _BUILT:
        return _BUILT["trained"]
    root = _import(tmp_path_factory.mktemp("loop") / "trained-project", demo_data)
    store = Store.open(root)
    train_round(store, tiny_config())
    image = store.images.ids(split="train")[0]
    positive = next(t.class_id for t in store.tags.for_image(image) if t.positive)
    store.tags.apply([TagEdit(image, positive, "negative")], source="person")   # a real change
    train_round(store, tiny_config())
    store.close()
    _BUILT["trained"] = root
    return root


def copy_project(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(source, target)
    return target


@pytest.fixture
def loop_state(qtbot):
    """`open_state(project_dir)` -> a ProjectState whose Workers have that project open."""
    from app.state import ProjectState
    from app.workers import Workers

    made = []

    def open_state(project_dir: Path) -> ProjectState:
        workers = Workers()
        state = ProjectState(workers)
        with qtbot.waitSignal(workers.project_opened, timeout=20000):
            workers.open_project(project_dir)
        state.reload()
        made.append(workers)
        return state

    yield open_state
    for workers in made:
        workers.shutdown()
