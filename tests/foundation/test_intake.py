"""engine.intake: scanning folders, re-scans (new, changed, moved, vanished), bad files."""

from __future__ import annotations

import os
import time

import pytest

from engine import images
from engine.errors import UserError
from engine.intake import register_files, scan_folder
from engine.store import TagEdit

from .files import gradient_rgb, write_bad, write_odd_valid

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def _make(folder, names, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        gradient_rgb(size[0] + k, size[1]).save(path)


def _bump_mtime(path, seconds=5):
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + seconds))


def test_first_scan_registers_recursively(backend_project, tmp_path):
    folder = tmp_path / "photos"
    _make(folder, ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.tiff", ".hidden/e.jpg",
                   "sub/.f.jpg"])
    (folder / "notes.txt").write_text("not an image")
    seen = []
    report = scan_folder(backend_project, folder, progress=lambda d, t: seen.append((d, t)))
    names = sorted(p.relative_to(folder).as_posix() for p in report.added)
    assert names == ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.tiff"]
    assert report.total == 4 and not report.unreadable
    assert seen and seen[-1] == (4, 4)
    rows = {image.rel_path: image for image in backend_project.images.list()}
    assert set(rows) == set(names)
    assert rows["a.jpg"].width == 40 and rows["a.jpg"].height == 30
    assert rows["sub/c.webp"].width == 42
    assert all(r.status == "readable" and r.split == "unassigned" and r.content_hash
               for r in rows.values())
    assert [root.path for root in backend_project.roots.list()] == [str(folder.resolve())]


def test_rescan_is_idempotent(backend_project, tmp_path):
    folder = tmp_path / "photos"
    _make(folder, ["a.jpg", "b.jpg", "c.png"])
    first = scan_folder(backend_project, folder)
    second = scan_folder(backend_project, folder)
    assert len(first.added) == 3
    assert (second.added, second.changed, second.moved, second.vanished) == ([], [], [], [])
    assert second.unchanged == 3
    assert second.image_ids == first.image_ids
    assert backend_project.images.count() == 3


def test_changed_moved_vanished_restored(backend_project, tmp_path):
    folder = tmp_path / "photos"
    _make(folder, ["keep.jpg", "change.jpg", "move.jpg", "vanish.jpg", "touch.jpg"])
    first = scan_folder(backend_project, folder)
    ids = {p.name: i for p, i in first.image_ids.items()}
    cls = backend_project.classes.ensure(["cat"])[0]
    backend_project.tags.apply([TagEdit(ids["move.jpg"], cls.id, "positive"),
                              TagEdit(ids["vanish.jpg"], cls.id, "negative")])

    gradient_rgb(99, 77).save(folder / "change.jpg")
    _bump_mtime(folder / "change.jpg")
    (folder / "elsewhere").mkdir()
    (folder / "move.jpg").rename(folder / "elsewhere" / "moved.jpg")
    vanished_bytes = (folder / "vanish.jpg").read_bytes()
    (folder / "vanish.jpg").unlink()
    _bump_mtime(folder / "touch.jpg")
    gradient_rgb(10, 10).save(folder / "new.png")

    report = scan_folder(backend_project, folder)
    assert [p.name for p in report.added] == ["new.png"]
    assert [p.name for p in report.changed] == ["change.jpg"]
    assert [(a.name, b.name) for a, b in report.moved] == [("move.jpg", "moved.jpg")]
    assert [p.name for p in report.vanished] == ["vanish.jpg"]
    assert report.unchanged == 2  # keep.jpg, and touch.jpg whose content did not change

    changed = backend_project.images.get(ids["change.jpg"])
    assert (changed.width, changed.height) == (99, 77)
    moved = backend_project.images.get(ids["move.jpg"])
    assert moved.rel_path == "elsewhere/moved.jpg" and moved.present
    assert [t.positive for t in backend_project.tags.for_image(ids["move.jpg"])] == [True]
    gone = backend_project.images.get(ids["vanish.jpg"])
    assert gone.present is False
    assert [t.positive for t in backend_project.tags.for_image(ids["vanish.jpg"])] == [False]
    assert backend_project.images.count() == 5
    assert ids["vanish.jpg"] not in backend_project.images.ids()

    # The file comes back: same row, tags intact.
    (folder / "vanish.jpg").write_bytes(vanished_bytes)
    again = scan_folder(backend_project, folder)
    assert [p.name for p in again.restored] == ["vanish.jpg"]
    assert again.image_ids[folder.resolve() / "vanish.jpg"] == ids["vanish.jpg"]
    assert backend_project.images.get(ids["vanish.jpg"]).present
    assert len(backend_project.tags.for_image(ids["vanish.jpg"])) == 1


def test_move_detected_across_scans_and_roots(backend_project, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _make(one, ["x.jpg"])
    two.mkdir()
    first = scan_folder(backend_project, one)
    image_id = next(iter(first.image_ids.values()))
    (one / "x.jpg").rename(two / "x.jpg")
    assert [p.name for p in scan_folder(backend_project, one).vanished] == ["x.jpg"]
    report = scan_folder(backend_project, two)
    assert len(report.moved) == 1 and not report.added
    row = backend_project.images.get(image_id)
    assert row.present and row.rel_path == "x.jpg"
    assert backend_project.images.paths([image_id])[image_id] == (two / "x.jpg").resolve()


def test_copies_are_separate_images(backend_project, tmp_path):
    folder = tmp_path / "p"
    _make(folder, ["a.jpg"])
    (folder / "copy.jpg").write_bytes((folder / "a.jpg").read_bytes())
    report = scan_folder(backend_project, folder)
    assert len(report.added) == 2 and len(set(report.image_ids.values())) == 2


def test_bad_files_are_registered_unreadable(backend_project, tmp_path):
    folder = tmp_path / "bad"
    expected = write_bad(folder)
    odd = write_odd_valid(tmp_path / "bad" / "odd")
    report = scan_folder(backend_project, folder)
    reasons = {p.name: reason for p, reason in report.unreadable}
    assert set(reasons) == set(expected)
    for name, reason in expected.items():
        assert reason in reasons[name], (name, reasons[name])
    rows = {r.rel_path: r for r in backend_project.images.list()}
    assert len(rows) == len(expected) + len(odd)
    for name in expected:
        assert rows[name].status == "unreadable" and reason_of(rows[name])
    for name in odd:
        row = rows[f"odd/{name}"]
        assert row.status == "readable", (name, row.reason)
        assert (row.width, row.height) == (64, 48)
    assert backend_project.images.counts_by_status() == {
        "unreadable": len(expected), "readable": len(odd)}
    assert set(backend_project.images.ids()) == {rows[f"odd/{n}"].id for n in odd}
    # A re-scan reports them again (they are re-checked every time) and changes nothing.
    again = scan_folder(backend_project, folder)
    assert {p.name for p, _ in again.unreadable} == set(expected)
    assert not again.added and not again.changed and not again.vanished


def reason_of(row):
    return row.reason


def test_permission_denied_is_unreadable_then_fixed(backend_project, tmp_path, monkeypatch):
    import builtins
    import errno

    folder = tmp_path / "p"
    _make(folder, ["ok.jpg", "locked.jpg"])
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if os.fspath(path).endswith("locked.jpg"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", fake_open, raising=False)
    report = scan_folder(backend_project, folder)
    assert [(p.name, r) for p, r in report.unreadable] == [("locked.jpg", "permission denied")]
    monkeypatch.undo()
    fixed = scan_folder(backend_project, folder)
    assert not fixed.unreadable and [p.name for p in fixed.changed] == ["locked.jpg"]
    assert backend_project.images.counts_by_status() == {"readable": 2}


def test_fixed_file_becomes_readable(backend_project, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "late.jpg").write_bytes(b"")
    assert scan_folder(backend_project, folder).unreadable
    gradient_rgb().save(folder / "late.jpg")
    report = scan_folder(backend_project, folder)
    assert not report.unreadable
    row = backend_project.images.list()[0]
    assert row.status == "readable" and row.reason is None and row.width == 64


def test_split_and_subfolder_of_a_root(backend_project, tmp_path):
    folder = tmp_path / "p"
    _make(folder, ["a.jpg", "sub/b.jpg", "sub/c.jpg"])
    scan_folder(backend_project, folder)
    report = scan_folder(backend_project, folder / "sub", split="test")
    assert len(backend_project.roots.list()) == 1
    assert report.unchanged == 2 and not report.added and not report.vanished
    assert backend_project.images.counts_by_split() == {"unassigned": 1, "test": 2}
    (folder / "a.jpg").unlink()
    assert not scan_folder(backend_project, folder / "sub").vanished  # outside the subtree


def test_parent_of_an_existing_root(backend_project, tmp_path):
    folder = tmp_path / "p"
    _make(folder, ["a.jpg", "inner/b.jpg"])
    inner = scan_folder(backend_project, folder / "inner")
    report = scan_folder(backend_project, folder, split="train")
    assert report.total == 2
    assert report.image_ids[(folder / "inner" / "b.jpg").resolve()] == \
        inner.image_ids[(folder / "inner" / "b.jpg").resolve()]
    assert backend_project.images.count() == 2
    assert backend_project.images.counts_by_split() == {"train": 2}


def test_project_folder_inside_scanned_folder_is_skipped(tmp_path):
    from engine.store import Store

    folder = tmp_path / "p"
    _make(folder, ["a.jpg"])
    store = Store.open(folder / "project")
    gradient_rgb().save(store.paths.thumbnails_cache / "thumb.jpg")
    report = scan_folder(store, folder)
    assert [p.name for p in report.added] == ["a.jpg"]
    store.close()


def test_register_files(backend_project, tmp_path):
    folder = tmp_path / "p"
    _make(folder, ["a.jpg", "b.jpg", "c.jpg"])
    report = register_files(backend_project, folder, ["a.jpg", folder / "b.jpg"], split="val")
    assert sorted(p.name for p in report.added) == ["a.jpg", "b.jpg"]
    assert backend_project.images.counts_by_split() == {"val": 2}
    with pytest.raises(UserError):
        register_files(backend_project, folder, [tmp_path / "elsewhere.jpg"])


def test_bad_folder_arguments(backend_project, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_folder(backend_project, tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder"):
        scan_folder(backend_project, tmp_path / "file.jpg")
    with pytest.raises(UserError, match="Unknown split"):
        scan_folder(backend_project, tmp_path, split="holdout")


def test_many_files_are_fast(backend_project, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    payload = (tmp_path / "x.jpg")
    gradient_rgb().save(payload)
    data = payload.read_bytes()
    for k in range(500):
        comment = f"{k}".encode()
        (folder / f"{k}.jpg").write_bytes(data[:2] + b"\xff\xfe" + (len(comment) + 2)
                                          .to_bytes(2, "big") + comment + data[2:])
    start = time.perf_counter()
    report = scan_folder(backend_project, folder)
    first = time.perf_counter() - start
    assert len(report.added) == 500 and not report.unreadable
    assert first < 10


def test_undecodable_file_name_is_reported_not_fatal(backend_project, tmp_path):
    folder = tmp_path / "p"
    _make(folder, ["ok.jpg"])
    try:
        with open(os.fsencode(folder) + b"/bad\xff.jpg", "wb") as handle:
            handle.write((folder / "ok.jpg").read_bytes())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    report = scan_folder(backend_project, folder)
    assert [p.name for p in report.added] == ["ok.jpg"]
    assert len(report.unreadable) == 1 and "UTF-8" in report.unreadable[0][1]


def test_image_types_intake_does_not_read_are_named(backend, backend_project, tmp_path, capsys):
    from engine.cli.main import main

    folder = tmp_path / "mixed"
    _make(folder, ["a.jpg", "sub/b.png"])
    (folder / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (folder / "sub" / "IMG_1.CR2").write_bytes(b"raw")
    (folder / "notes.txt").write_text("not an image at all")
    report = scan_folder(backend_project, folder)
    assert report.total == 2
    assert [(path.name, "vector" in reason or "raw" in reason)
            for path, reason in report.skipped] == [("logo.svg", True), ("IMG_1.CR2", True)]
    assert "2 skipped by type (logo.svg, IMG_1.CR2)" in report.summary()
    assert "notes.txt" not in report.summary()

    assert main([*backend.cli_args(), "add-folder", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "skipped: " in out and "logo.svg" in out and "vector image" in out
