"""Several writers on one project at once (issue 14), on SQLite and on PostgreSQL: two `mlic`
processes (one importing tags from CSV files, one adding and re-scanning folders) while a person
toggles a class on every image in the app, again and again, and the app's database thread stores a
model's suggestions. The rows are counted before and after: every tag, history entry, image and
score block is there, and no writer failed."""

from __future__ import annotations

import subprocess
import sys

from tests.gui.conftest import open_window
from tests.gui.projects import write_images

IMAGES = 30


def _mlic(backend, *commands: list[str]) -> subprocess.Popen:
    """One process running `mlic` commands one after another (a shell's `&&`)."""
    line = " && ".join(" ".join([sys.executable, "-m", "engine", *backend.cli_args(), *command])
                       for command in commands)
    return subprocess.Popen(["sh", "-c", line], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _counts(store) -> dict[str, int]:
    return {"images": store.images.count(), "history": len(store.tags.history()),
            "tags": sum(store.tags.counts_by_source().values())}


def _write_csv(path, paths, columns: dict[str, str]) -> None:
    header = ",".join(["path", *columns])
    path.write_text("\n".join([header, *(",".join([str(p), *columns.values()]) for p in paths)])
                    + "\n")


def test_two_processes_and_the_app_lose_nothing(qtbot, backend, settings, tmp_path, errors):
    photos = write_images(tmp_path / "photos", IMAGES)
    more = [write_images(tmp_path / f"more-{k}", 10) for k in range(3)]
    store = backend.open()
    from engine.intake import scan_folder

    scan_folder(store, tmp_path / "photos")
    cat, _ = store.classes.ensure(["cat", "dog"])
    ids = store.images.ids()
    before = _counts(store)
    for name, columns in (("a", {"dog": "1"}), ("b", {"bird": "0"}), ("c", {"fish": "1"})):
        _write_csv(tmp_path / f"{name}.csv", photos, columns)

    window = open_window(qtbot, backend.files, settings,
                         db_url=None if backend.name == "sqlite" else backend.url)
    qtbot.waitUntil(lambda: window.model.rowCount() == IMAGES, timeout=30000)
    tagger = _mlic(backend, *(["import-csv", str(tmp_path / f"{n}.csv")] for n in "abc"))
    scanner = _mlic(backend, *(["add-folder", str(tmp_path / f"more-{k}")] for k in range(3)),
                    ["add-folder", str(tmp_path / "more-0")])
    window.workers.db(lambda s: s.suggestions.replace("student-9", ids,
                                                      [(i, cat.id, 0.9) for i in ids]))
    toggles = 0
    while tagger.poll() is None or scanner.poll() is None or toggles < 3:
        window.gallery.selectAll()
        window.toggle_class(cat.id)
        toggles += 1
        finished: list[bool] = []
        window.workers.db(lambda s: None, on_done=lambda _r: finished.append(True))
        qtbot.waitUntil(lambda: bool(finished), timeout=60000)
    outputs = [process.communicate(timeout=120) for process in (tagger, scanner)]
    assert [tagger.returncode, scanner.returncode] == [0, 0], outputs
    assert all("Traceback" not in err for _, err in outputs), outputs
    assert errors == []

    after = _counts(store)
    cat_on = toggles % 2 == 1
    assert after["images"] == before["images"] + sum(len(paths) for paths in more)
    assert after["tags"] == before["tags"] + IMAGES * (3 + cat_on)       # dog, bird, fish (+ cat)
    assert after["history"] == before["history"] + IMAGES * (3 + toggles)
    assert store.tags.counts_by_class().get("cat", 0) == (IMAGES if cat_on else 0)
    assert len(store.suggestions.scored_ids(ids, "student-9")) == IMAGES
    window.close()
    store.close()
