"""The project store: schema and migrations, tags with history and revert, label matrices, runs,
suggestions kept apart from tags."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from engine.errors import UserError
from engine.store import BoxRow, Store, TagEdit
from engine.store.database import alembic_config, head_revision


def _images(store: Store, tmp_path, count: int) -> list[int]:
    root = store.roots.get_or_create(tmp_path)
    return store.images.add_many([
        {"root_id": root.id, "rel_path": f"{k}.jpg", "content_hash": f"h{k}", "width": 10,
         "height": 10} for k in range(count)])


def test_new_project_is_at_alembic_head_with_sqlite_settings(tmp_path):
    store = Store.open(tmp_path / "p")
    assert (tmp_path / "p" / "project.sqlite").is_file()
    assert store.paths.models_dir.is_dir() and store.paths.thumbnails_cache.is_dir()
    head = ScriptDirectory.from_config(alembic_config(store.url)).get_current_head()
    assert head_revision() == head            # what opening a project at head compares with
    with store.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head
        assert connection.execute(text("pragma journal_mode")).scalar() == "wal"
        assert connection.execute(text("pragma foreign_keys")).scalar() == 1
    tables = set(inspect(store.engine).get_table_names())
    assert {"roots", "images", "classes", "tags", "tag_history", "suggestions", "regions",
            "gt_boxes", "runs", "settings"} <= tables
    store.close()


def test_open_twice_and_reopen_keeps_data(tmp_path):
    first = Store.open(tmp_path / "p")
    second = Store.open(tmp_path / "p")
    first.classes.ensure(["cat"])
    assert second.classes.names() == ["cat"]
    first.close()
    second.close()
    third = Store.open(tmp_path / "p")
    assert third.classes.names() == ["cat"]
    third.close()


def test_db_url_and_bad_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    store = Store.open(tmp_path / "files", db_url=url)
    store.classes.ensure(["x"])
    assert (tmp_path / "elsewhere.sqlite").is_file()
    assert not (tmp_path / "files" / "project.sqlite").exists()
    store.close()
    with pytest.raises(UserError):
        Store.open(tmp_path / "files", db_url="nosuchdialect://x")


def test_not_a_database(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.sqlite").write_text("this is not sqlite " * 100)
    with pytest.raises(UserError):
        Store.open(tmp_path / "p")


def test_tags_history_and_revert(backend_project, tmp_path):
    store = backend_project
    a, b = _images(store, tmp_path, 2)
    cat, dog = store.classes.ensure(["cat", "dog"])
    store.tags.set(a, cat.id, "positive")
    batch = store.tags.apply([TagEdit(a, cat.id, "negative"), TagEdit(b, dog.id, "positive")])
    store.tags.set(a, cat.id, "positive")  # same again later
    store.tags.set(b, dog.id, None)
    history = store.tags.history()
    assert [(h.old_state, h.new_state) for h in history] == [
        (None, "positive"), ("positive", "negative"), (None, "positive"),
        ("negative", "positive"), ("positive", None)]
    assert len(store.tags.history(image_id=b)) == 2
    store.tags.apply([TagEdit(a, cat.id, "positive")])  # no change, no history
    assert len(store.tags.history()) == 5
    store.tags.revert([history[-1].id])
    assert [t.positive for t in store.tags.for_image(b)] == [True]
    store.tags.revert_batch(batch)
    assert store.tags.for_image(b) == []
    assert [t.positive for t in store.tags.for_image(a)] == [True]  # old state of that change
    with pytest.raises(UserError):
        store.tags.revert_batch("no-such-batch")
    assert store.tags.last_change_id() == store.tags.history()[-1].id


def test_label_matrix_now_and_as_of(backend_project, tmp_path):
    store = backend_project
    a, b, c = _images(store, tmp_path, 3)
    cat, dog = store.classes.ensure(["cat", "dog"])
    store.images.set_split([a, b], "train")
    store.tags.apply([TagEdit(a, cat.id, "positive"), TagEdit(b, dog.id, "negative")])
    watermark = store.tags.last_change_id()
    store.tags.apply([TagEdit(a, dog.id, "positive"), TagEdit(c, cat.id, "positive")])
    now = store.tags.label_matrix(split="train")
    assert now.image_ids == [a, b] and now.class_names == ["cat", "dog"]
    assert np.array_equal(now.labels, [[1, 1], [0, 0]])
    past = store.tags.label_matrix(as_of_change=watermark)
    assert past.image_ids == [a, b]
    assert np.array_equal(past.labels, [[1, 0], [0, 0]])
    store.images.update_many([{"id": a, "status": "unreadable", "reason": "truncated file"}])
    assert store.tags.label_matrix(split="train").image_ids == [b]


def test_classes_merge_and_delete(backend_project, tmp_path):
    store = backend_project
    a, b = _images(store, tmp_path, 2)
    cat, kitty, dog = store.classes.ensure(["cat", "kitty", "dog"])
    store.tags.apply([TagEdit(a, kitty.id, "positive"), TagEdit(b, kitty.id, "negative"),
                      TagEdit(b, cat.id, "positive")])
    store.classes.merge(kitty.id, cat.id)
    assert store.classes.names() == ["cat", "dog"]
    assert {t.image_id: t.positive for t in store.tags.for_images([a, b])[a] +
            store.tags.for_images([a, b])[b]} == {a: True, b: True}
    with pytest.raises(UserError):
        store.classes.update(dog.id, name="cat")
    with pytest.raises(UserError):
        store.classes.ensure(["bad,name"])
    store.classes.delete(dog.id)
    assert store.classes.names() == ["cat"]


def test_suggestions_never_touch_tags(backend_project, tmp_path):
    store = backend_project
    (a,) = _images(store, tmp_path, 1)
    (cat,) = store.classes.ensure(["cat"])
    store.tags.set(a, cat.id, "negative")
    run = store.runs.create("student", {"epochs": 1}, ["cat"])
    store.suggestions.replace(run.model_version, [a], [(a, cat.id, 0.97)])
    assert [t.positive for t in store.tags.for_image(a)] == [False]
    assert store.suggestions.for_image(a, run.model_version)[0].confidence == pytest.approx(0.97)
    store.suggestions.replace(run.model_version, [a], [])
    assert store.suggestions.for_image(a, run.model_version) == []


def test_runs_regions_boxes_settings(backend_project, tmp_path):
    store = backend_project
    (a,) = _images(store, tmp_path, 1)
    (cat,) = store.classes.ensure(["cat"])
    store.tags.set(a, cat.id, "positive")
    run = store.runs.create("teacher", {"lr": 0.1}, ["cat"])
    assert run.model_version == f"teacher-{run.id}" and run.status == "running"
    assert run.tag_watermark == store.tags.last_change_id()
    store.runs.update(run.id, status="completed", metrics={"mAP": 0.5}, checkpoint="x.pt",
                      finished=True)
    assert store.runs.latest("teacher").metrics == {"mAP": 0.5}
    assert store.runs.by_version(run.model_version).id == run.id
    with pytest.raises(ValueError):
        store.runs.update(run.id, status="exploded")
    store.regions.replace(run.model_version, [a], [BoxRow(a, cat.id, 1, 2, 3, 4, 0.9)])
    assert store.regions.for_image(a, run.model_version)[0].w == 3
    store.boxes.replace_for_images([a], [BoxRow(a, cat.id, 0, 0, 5, 5)])
    store.boxes.replace_for_images([a], [BoxRow(a, cat.id, 1, 1, 5, 5)])
    assert [(b.x, b.w) for b in store.boxes.for_images([a])[a]] == [(1, 5)]
    store.settings.set("active.student", "student-3")
    assert store.settings.get("active.student") == "student-3"
    assert store.settings.get("missing", 7) == 7


def test_concurrent_reader_while_writing(backend_project, tmp_path):
    store = backend_project
    ids = _images(store, tmp_path, 50)
    (cat,) = store.classes.ensure(["cat"])
    errors = []

    def reader():
        try:
            for _ in range(30):
                store.tags.counts_by_class()
                store.images.count()
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for image_id in ids:
        store.tags.set(image_id, cat.id, "positive")
    thread.join()
    assert not errors
    assert store.tags.counts_by_class() == {"cat": 50}


def test_sqlite_file_is_plain_sqlite(empty_project):
    empty_project.classes.ensure(["cat"])
    connection = sqlite3.connect(empty_project.paths.database)
    assert connection.execute("select name from classes").fetchall() == [("cat",)]
    connection.close()


def test_scores_are_dense_blocks_with_rows_only_above_the_floor(backend_project, tmp_path):
    from engine.store.scores import SUGGESTION_FLOOR

    store = backend_project
    a, b = _images(store, tmp_path, 2)
    cat, dog, bird = (c.id for c in store.classes.ensure(["cat", "dog", "bird"]))
    store.suggestions.replace_matrix("student-1", [a, b], [cat, dog],
                                     np.array([[0.9, 0.001], [0.01, 0.5]], dtype=np.float32))
    store.suggestions.replace_matrix("student-1", [b], [bird], np.array([[0.3]], dtype=np.float32))
    class_ids, scores, found = store.suggestions.scores([a, b, 999], "student-1")
    assert class_ids == [cat, dog, bird] and found.tolist() == [True, True, False]
    assert np.allclose(scores[:2], [[0.9, 0.001, np.nan], [np.nan, np.nan, 0.3]], equal_nan=True)
    with store.engine.connect() as connection:          # the gallery's rows: at or above the floor
        rows = set(connection.execute(text("select image_id, class_id from suggestions")))
    assert rows == {(a, cat), (b, bird)} and SUGGESTION_FLOOR > 0.001
    assert [s.class_id for s in store.suggestions.for_image(a, "student-1")] == [cat, dog]
    store.suggestions.delete_version("student-1")
    assert store.suggestions.scored_ids([a, b], "student-1") == set()


def test_migration_0005_turns_suggestion_rows_into_blocks_and_back(db_url, tmp_path):
    from alembic import command

    url = db_url
    config = alembic_config(url)
    command.upgrade(config, "0003")
    with create_engine(url).begin() as connection:
        connection.execute(text("insert into roots (id, path, added_at) values (1, '/p', '2026-01-01')"))
        for image_id in (1, 2):
            connection.execute(text(
                "insert into images (id, root_id, rel_path, file_size, mtime, status, present, "
                "split, added_at) values (:i, 1, :p, 0, 0, 'readable', true, 'train', '2026-01-01')"),
                {"i": image_id, "p": f"{image_id}.jpg"})
        connection.execute(text("insert into classes (id, name, color, threshold) values "
                                "(1, 'cat', '#fff', 0.5), (2, 'dog', '#fff', 0.5)"))
        connection.execute(text(
            "insert into suggestions (image_id, class_id, confidence, model_version, created_at) "
            "values (1, 1, 0.8, 'student-1', '2026-01-01'), (1, 2, 0.005, 'student-1', "
            "'2026-01-01'), (2, 2, 0.4, 'student-1', '2026-01-01')"))
    with Store.open(tmp_path / "files", db_url=url) as store:
        _, scores, _ = store.suggestions.scores([1, 2], "student-1")
        assert np.allclose(scores, [[0.8, 0.005], [np.nan, 0.4]], equal_nan=True)
        with store.engine.connect() as connection:
            assert connection.execute(text("select count(*) from suggestions")).scalar() == 2
    command.downgrade(config, "0003")
    with create_engine(url).connect() as connection:
        rows = connection.execute(text("select image_id, class_id, confidence from suggestions "
                                       "order by image_id, class_id")).all()
    assert [(i, c) for i, c, _ in rows] == [(1, 1), (1, 2), (2, 2)]
    assert np.allclose([p for _, _, p in rows], [0.8, 0.005, 0.4])
