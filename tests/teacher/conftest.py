"""Fixtures of the teacher tests: a tiny, fast training configuration and a trained project."""

from __future__ import annotations

import pytest
import torch

from engine.training import TrainConfig

# One intra-op thread: the suite runs in parallel worker processes (pytest -n), where more threads
# per process only oversubscribe the cores.
torch.set_num_threads(1)


def tiny_config(**overrides) -> TrainConfig:
    """A teacher that trains on the demo project in seconds on the CPU."""
    values = dict(stage="teacher", epochs=1, image_size=64, scales=(64,), max_proposals=12,
                  hidden=16, batch_size=16, refine_branches=1, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, demo_data):
    """A demo project with one tiny trained teacher (shared by a module's tests: treat as
    read-only apart from regions)."""
    from engine.demo import import_demo
    from engine.store import Store
    from engine.training import train

    store = Store.open(tmp_path_factory.mktemp("trained") / "project")
    import_demo(store, demo_data.root)
    run = train(store, tiny_config(epochs=2))[0]
    assert run.status == "completed"
    yield store
    store.close()
