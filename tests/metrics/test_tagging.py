"""Batch tagging: CSV format, unreadable files, suggestions stored, a person's tags untouched."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from engine.cli.main import main
from engine.datasets.student import decode_size, prepare_file, student_input
from engine.images import load_rgb, probe_image
from engine.inference.tagging import tag_paths, write_predictions_csv


@pytest.fixture
def photo_folder(tmp_path, demo_data):
    """6 demo images (2 in a sub-folder) and 3 unreadable files."""
    folder = tmp_path / "photos"
    (folder / "sub dir").mkdir(parents=True)
    sources = sorted(demo_data.images_dir.glob("*.jpg"))[:6]
    for i, src in enumerate(sources):
        shutil.copy(src, folder / ("sub dir" if i >= 4 else "") / src.name)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    data = sources[0].read_bytes()
    (folder / "sub dir" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    return folder


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def test_tag_command_writes_the_csv_and_skips_unreadable(student_project, photo_folder, tmp_path,
                                                         capsys):
    store, run, _ = student_project
    out = tmp_path / "predictions.csv"
    status = main(["--project", str(store.paths.root), "tag", str(photo_folder), "--out", str(out),
                   "--batch-size", "4", "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    header, rows = read_csv(out)
    assert header == ["path", *run.class_names]
    paths = [row[0] for row in rows]
    assert len(rows) == 6
    assert sum(p.startswith("sub dir/") for p in paths) == 2          # relative, POSIX
    assert all(not p.startswith("/") for p in paths)
    values = np.array([[float(v) for v in row[1:]] for row in rows])
    assert values.shape == (6, len(run.class_names))
    assert np.all((values >= 0) & (values <= 1))
    for name in ("empty.jpg", "notes.png", "sub dir/truncated.jpg"):
        assert name in captured.err
        assert name not in paths
    assert "readme.txt" not in captured.err
    assert "Tagged 6 image(s)" in captured.out


def test_suggestions_are_stored_and_a_persons_tags_untouched(student_project, photo_folder):
    store, run, model = student_project
    from engine.intake import scan_folder

    report = scan_folder(store, photo_folder)
    files = sorted(p for p in report.image_ids if p.suffix == ".jpg" and p.stat().st_size > 0
                   and "truncated" not in p.name)
    first = report.image_ids[files[0]]
    classes = store.classes.list()
    store.tags.set(first, classes[0].id, "positive", source="person")
    store.tags.set(first, classes[1].id, "negative", source="person")
    before_tags = {(t.class_id, t.positive, t.source) for t in store.tags.for_image(first)}
    before_history = len(store.tags.history())

    result = tag_paths(store, files, batch_size=3, device="cpu", precision="fp32")
    assert result.model_version == run.model_version
    assert result.unreadable == [] and not result.cancelled
    assert {(t.class_id, t.positive, t.source) for t in store.tags.for_image(first)} == before_tags
    assert len(store.tags.history()) == before_history
    suggestions = store.suggestions.for_image(first, run.model_version)
    assert len(suggestions) == len(run.class_names)
    by_class = {s.class_id: s.confidence for s in suggestions}
    column = {c.name: c.id for c in classes}
    row = result.paths.index(files[0])
    for k, name in enumerate(result.class_names):
        assert by_class[column[name]] == pytest.approx(float(result.probabilities[row, k]), abs=1e-6)
    # tagging again replaces this version's suggestions instead of duplicating them
    tag_paths(store, files, device="cpu")
    assert len(store.suggestions.for_image(first, run.model_version)) == len(run.class_names)


def test_probabilities_match_the_plain_model(student_project, demo_data):
    store, run, model = student_project
    files = sorted(demo_data.images_dir.glob("*.jpg"))[:5]
    result = tag_paths(store, files, batch_size=2, device="cpu", precision="fp32", num_workers=1)
    sizes = [probe_image(f).size for f in files]
    batch = torch.stack([prepare_file(f, model.image_size, size)
                         for f, size in zip(files, sizes)]).float() / 255
    with torch.inference_mode():
        expected = torch.sigmoid(model(batch)).numpy()
    assert result.probabilities == pytest.approx(expected, abs=1e-4)
    # the reduced-size decode is close to a full decode at the input size
    full = torch.stack([student_input(load_rgb(f), model.image_size) for f in files]).float()
    assert (full - batch * 255).abs().mean() < 4.0
    # reduced-precision path (bfloat16 on the CPU) stays close
    fast = tag_paths(store, files, device="cpu", precision="bf16", num_workers=0)
    assert np.abs(fast.probabilities - expected).max() < 0.05


def test_decode_size_picks_the_smallest_sufficient_jpeg_scale():
    assert decode_size(224, (250, 225)) is None            # no reduction keeps 224 px
    assert decode_size(224, (640, 480)) == 320              # 1/2
    assert decode_size(224, (4000, 3000)) == 500            # 1/8
    assert decode_size(224, None) is None
    # Pillow's draft needs the request <= floor(side / r) on both sides
    assert decode_size(224, (4001, 2999)) * 2999 / 4001 <= 2999 // 8


def test_unregistered_files_are_registered_and_cancel_keeps_what_is_done(student_project,
                                                                         photo_folder):
    store, run, _ = student_project
    files = sorted(photo_folder.rglob("*.jpg"))
    calls = []
    result = tag_paths(store, files, batch_size=2, device="cpu", num_workers=0,
                       should_stop=lambda: len(calls) >= 1, progress=lambda d, t: calls.append(d))
    assert result.cancelled
    assert len(result.paths) + len(result.unreadable) == 2
    assert all(i is not None for i in result.image_ids)
    assert store.images.find_by_path(files[0]) is not None


def test_no_student_is_a_clear_error(empty_project, photo_folder, tmp_path, capsys):
    status = main(["--project", str(empty_project.paths.root), "tag", str(photo_folder),
                   "--out", str(tmp_path / "p.csv")])
    assert status == 2
    err = capsys.readouterr().err
    assert "no trained student" in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


def test_csv_is_written_whole(tmp_path):
    from engine.inference.tagging import TaggingResult

    result = TaggingResult(paths=[tmp_path / "a,b.jpg", tmp_path / "x" / "c.jpg"],
                           probabilities=np.array([[0.25, 1.0], [0.0, 0.5]], dtype=np.float32),
                           class_names=["cat", "dog"], model_version="student-1")
    out = write_predictions_csv(result, tmp_path / "p.csv", relative_to=tmp_path)
    assert out.read_text() == ('path,cat,dog\n"a,b.jpg",0.250000,1.000000\n'
                               'x/c.jpg,0.000000,0.500000\n')
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_tagging_from_a_background_thread(student_project, demo_data):
    """The GUI tags on a worker thread: loader processes then start from a forkserver."""
    import threading

    store, run, _ = student_project
    files = sorted(demo_data.images_dir.glob("*.jpg"))[:20]
    results = []
    thread = threading.Thread(target=lambda: results.append(
        tag_paths(store, files, batch_size=8, device="cpu", num_workers=1)))
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive() and len(results[0].paths) == 20


def test_empty_folder_and_deleted_class(student_project, tmp_path, demo_data, capsys):
    store, run, _ = student_project
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "p.csv"
    assert main(["--project", str(store.paths.root), "tag", str(empty), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert out.read_text() == "path," + ",".join(run.class_names) + "\n"
    # a class deleted after training: still in the CSV (the model's classes), no suggestion row,
    # and not re-created in the project
    gone = store.classes.get(run.class_names[0])
    store.classes.delete(gone.id)
    files = sorted(demo_data.images_dir.glob("*.jpg"))[:3]
    result = tag_paths(store, files, device="cpu")
    assert result.class_names == list(run.class_names)
    assert run.class_names[0] not in store.classes.names()
    assert len(store.suggestions.for_image(result.image_ids[0], run.model_version)) == \
        len(run.class_names) - 1


def test_tag_images_and_tag_paths_agree(student_project, demo_data):
    """The id core and the file wrapper give the same probabilities for the same images."""
    from engine.inference.tagging import tag_images

    store, _, _ = student_project
    files = sorted(demo_data.images_dir.glob("*.jpg"))[:4]
    by_path = tag_paths(store, files, device="cpu", precision="fp32", num_workers=0)
    ids = [i for i in by_path.image_ids if i is not None]
    assert len(ids) == len(files)
    by_id = tag_images(store, ids, device="cpu", precision="fp32", num_workers=0)
    assert by_id.image_ids == ids
    assert [p.name for p in by_id.paths] == [p.name for p in by_path.paths]
    np.testing.assert_allclose(by_id.probabilities, by_path.probabilities, atol=1e-6)
