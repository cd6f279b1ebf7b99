"""Batch tagging from the GUI: a folder or the selection, in a worker, results as suggestions."""

from __future__ import annotations

import pytest

from tests.gui.loop_projects import (  # noqa: F401 - fixtures
    copy_project,
    loop_state,
    trained_project_dir,
)


@pytest.fixture
def tagger(qtbot, tmp_path, trained_project_dir, loop_state, errors):
    from app.loop.batch_tagger import BatchTagger

    state = loop_state(copy_project(trained_project_dir, tmp_path))
    selected: list[int] = []
    job = BatchTagger(state, selection=lambda: list(selected))
    job.selected = selected
    yield job
    assert errors == []


def test_tag_a_folder_stores_suggestions_and_announces_them(qtbot, tagger, demo_data):
    store = tagger.workers.store
    version = "student-2"
    progress = []
    tagger.progress.connect(lambda done, total: progress.append((done, total)))
    messages = []
    tagger.message.connect(messages.append)
    with qtbot.waitSignal(tagger.suggestions_changed, timeout=120000) as changed:
        tagger.tag_folder(demo_data.images_dir)
        assert tagger.running and not tagger.folder_action.isEnabled()
    ids = changed.args[0]
    assert len(ids) == demo_data.n_images == store.images.count()
    assert progress and progress[-1] == (demo_data.n_images, demo_data.n_images)
    suggestions = store.suggestions.for_images(ids, version)
    assert all(len(rows) == 12 for rows in suggestions.values())
    assert all(0.0 <= s.confidence <= 1.0 for rows in suggestions.values() for s in rows)
    assert messages and messages[-1].startswith(f"Tagged {demo_data.n_images} images with {version}")
    qtbot.waitUntil(lambda: not tagger.running, timeout=5000)
    assert tagger.folder_action.isEnabled() and not tagger.cancel_action.isEnabled()


def test_tag_the_selection_and_nothing_selected(qtbot, tagger, errors):
    store = tagger.workers.store
    chosen = store.images.ids(split="test")[:3]
    store.suggestions.replace("student-2", chosen, [])
    tagger.tag_selection()                                 # nothing selected: a clear error
    assert len(errors) == 1 and "Select images" in str(errors[0])
    errors.clear()
    tagger.selected.extend(chosen)
    with qtbot.waitSignal(tagger.finished, timeout=120000) as finished:
        tagger.tag_selection()
    assert sorted(finished.args[0].image_ids) == sorted(chosen)
    assert all(len(rows) == 12 for rows in store.suggestions.for_images(chosen, "student-2").values())


def test_cancel_a_tagging_job(qtbot, tagger, demo_data):
    cancelled = []
    tagger.started.connect(lambda job: job.cancelled.connect(lambda: cancelled.append(True)))
    tagger.tag_folder(demo_data.images_dir)
    tagger.cancel()
    qtbot.waitUntil(lambda: not tagger.running, timeout=120000)
    assert cancelled == [True]
