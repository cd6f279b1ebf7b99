"""Reliability with two writers (issue 15, item 12): separate processes creating the same classes
or scanning the same new folder at the same moment both succeed, and each class, root and image
exists once. Real processes (fork), started together at a barrier, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path

from engine.store import Store

from .reliability_helpers import write_images

PROCESSES = 4
ROUNDS = 25


def _create_classes(url: str, project: str, barrier, results) -> None:  # noqa: ANN001
    try:
        with Store.open(project, db_url=url) as store:
            for round_ in range(ROUNDS):
                barrier.wait(timeout=60)
                store.classes.ensure([f"class-{round_}", f"other-{round_}"])
        results.put("ok")
    except BaseException:  # noqa: BLE001 - the parent reports what went wrong
        results.put(traceback.format_exc())


def _scan(url: str, project: str, folder: str, barrier, results) -> None:  # noqa: ANN001
    from engine.intake import scan_folder

    try:
        with Store.open(project, db_url=url) as store:
            for round_ in range(ROUNDS // 5):
                barrier.wait(timeout=60)
                scan_folder(store, Path(folder) / f"batch-{round_}")
        results.put("ok")
    except BaseException:  # noqa: BLE001
        results.put(traceback.format_exc())


def _run_together(target, *args) -> list[str]:  # noqa: ANN001
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, results))
                 for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes


def test_processes_creating_the_same_classes_do_not_collide(db_url, tmp_path):
    project = str(tmp_path / "files")
    Store.open(project, db_url=db_url).close()
    outcomes = _run_together(_create_classes, db_url, project)
    assert outcomes == ["ok"] * PROCESSES, "\n".join(o for o in outcomes if o != "ok")
    with Store.open(project, db_url=db_url) as store:
        names = store.classes.names()
    assert sorted(names) == sorted({f"{kind}-{k}" for kind in ("class", "other")
                                    for k in range(ROUNDS)})


def test_processes_scanning_the_same_new_folder_do_not_collide(db_url, tmp_path):
    project, folder = str(tmp_path / "files"), tmp_path / "photos"
    for round_ in range(ROUNDS // 5):
        write_images(folder / f"batch-{round_}", [f"img-{k}.png" for k in range(12)])
    Store.open(project, db_url=db_url).close()
    outcomes = _run_together(_scan, db_url, project, str(folder))
    assert outcomes == ["ok"] * PROCESSES, "\n".join(o for o in outcomes if o != "ok")
    with Store.open(project, db_url=db_url) as store:
        assert len(store.roots.list()) == ROUNDS // 5
        images = store.images.list()
    assert len(images) == 12 * (ROUNDS // 5)
    assert len({(image.root_id, image.rel_path) for image in images}) == len(images)


def test_a_write_that_lost_to_another_writer_runs_again(backend_project, monkeypatch):
    """A tag write whose first attempt collides with another writer (the same new tag inserted
    meanwhile) is run again on top of what that writer wrote; nothing is lost or doubled."""
    from engine.store import TagEdit

    store = backend_project
    root = store.roots.get_or_create(Path("/photos"))
    (image,) = store.images.add_many([{"root_id": root.id, "rel_path": "a.jpg"}])
    cat, dog = (c.id for c in store.classes.ensure(["cat", "dog"]))
    other = Store.open(store.paths.root, db_url=store.url)
    attempts = []

    def lose_once(_session) -> None:  # noqa: ANN001
        attempts.append(len(attempts))
        if attempts == [0]:  # another process writes the same tag between the read and the write
            other.tags.set(image, cat, "positive")

    # without the write lock, so that the first read goes stale
    monkeypatch.setattr("engine.store.tag_writer.lock_for_writing", lambda session: None)
    monkeypatch.setattr("engine.store.tag_writer.TagWriter.flush", _flush_after(lose_once))
    store.tags.apply([TagEdit(image, cat, "positive"), TagEdit(image, dog, "negative")])
    other.close()
    assert len(attempts) == 3       # ours, the other's, ours again
    assert {(t.class_id, t.positive) for t in store.tags.for_image(image)} == {(cat, True),
                                                                               (dog, False)}
    assert [(c.class_id, c.new_state) for c in store.tags.history(image)] == [
        (cat, "positive"), (dog, "negative")]


def _flush_after(before):  # noqa: ANN001, ANN202
    from engine.store.tag_writer import TagWriter

    flush = TagWriter.flush

    def flush_later(self) -> None:  # noqa: ANN001
        before(self._session)
        flush(self)

    return flush_later


def test_a_busy_database_is_one_clear_line():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from engine.cli.failures import failure_message

    message = failure_message(OperationalError("INSERT", {}, sqlite3.OperationalError(
        "database is locked")))
    assert message.startswith("The project database is busy: another program is writing to it")
