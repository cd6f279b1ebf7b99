"""Three label states per (image, class): positive, negative, unknown (docs/label-states.md).

Through the store (label matrix, replay, completion), the imports (COCO exhaustive and --partial,
CSV 1/0/empty, XMP keywords) and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.exchange.coco import import_coco
from engine.exchange.csv_tags import import_csv
from engine.exchange.xmp import import_xmp
from engine.intake import scan_folder
from engine.store import UNKNOWN, Store, TagEdit

from .files import gradient_rgb

XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>{}</rdf:li>'
       '</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>')


def targets_by_name(store: Store, **kwargs) -> dict[str, dict[str, float]]:
    """file name -> class -> 1 / 0 / UNKNOWN, from the label matrix."""
    matrix = store.tags.label_matrix(**kwargs)
    return {path.name: dict(zip(matrix.class_names, map(float, row)))
            for path, row in zip(matrix.paths, matrix.targets())}


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for n, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        gradient_rgb(32 + n, 24).save(images / name)
    return images


def coco_file(tmp_path, images_extra=None):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                       {"id": 3, "file_name": "c.jpg", **(images_extra or {})}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"},
                           {"id": 3, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]},
                            {"id": 3, "image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5]}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path


def test_store_label_matrix_known_mask_replay_and_completion(empty_project, folder):
    store = empty_project
    scan_folder(store, folder)
    a, b, c = store.images.ids()
    cat, dog, car = (k.id for k in store.classes.ensure(["cat", "dog", "car"]))
    store.tags.apply([TagEdit(a, cat, "positive"), TagEdit(a, dog, "negative"),
                      TagEdit(b, car, "negative")])
    before = store.tags.last_change_id()
    matrix = store.tags.label_matrix()
    assert matrix.image_ids == [a, b]                        # c has no tag: not in the matrix
    assert matrix.known.tolist() == [[True, True, False], [False, False, True]]
    assert matrix.labels.tolist() == [[1, 0, 0], [0, 0, 0]]
    assert matrix.targets().tolist() == [[1, 0, UNKNOWN], [UNKNOWN, UNKNOWN, 0]]
    assert matrix.targets(untagged_as_negative=True).tolist() == [[1, 0, 0], [0, 0, 0]]

    edits = store.tags.completion([a, c])                    # mark a and c complete
    assert sorted((e.image_id, e.class_id, e.state) for e in edits) == [
        (a, car, "negative"), (c, cat, "negative"), (c, dog, "negative"), (c, car, "negative")]
    batch = store.tags.apply(edits)
    now = store.tags.label_matrix()
    assert now.image_ids == [a, b, c] and now.known[[0, 2]].all()
    past = store.tags.label_matrix(as_of_change=before)      # a round that started before
    assert past.known.tolist() == matrix.known.tolist()
    store.tags.revert_batch(batch)                           # undo: unknown again
    assert store.tags.label_matrix().known.tolist() == matrix.known.tolist()
    assert store.tags.completion([b]) == [TagEdit(b, cat, "negative"), TagEdit(b, dog, "negative")]


def test_a_class_added_later_is_unknown_and_a_deleted_one_too(empty_project, folder):
    store = empty_project
    scan_folder(store, folder)
    a = store.images.ids()[0]
    cat, dog = (k.id for k in store.classes.ensure(["cat", "dog"]))
    store.tags.apply(store.tags.completion([a]) + [TagEdit(a, cat, "positive")])
    store.classes.ensure(["bird"])
    assert targets_by_name(store) == {"a.jpg": {"cat": 1.0, "dog": 0.0, "bird": UNKNOWN}}
    store.classes.delete(dog)
    fixed = targets_by_name(store, class_names=["cat", "dog", "bird"])
    assert fixed == {"a.jpg": {"cat": 1.0, "dog": UNKNOWN, "bird": UNKNOWN}}


def test_coco_is_exhaustive_unless_partial(tmp_path, folder):
    exhaustive = Store.open(tmp_path / "p1")
    import_coco(exhaustive, coco_file(tmp_path), folder)
    assert targets_by_name(exhaustive) == {
        "a.jpg": {"cat": 1.0, "dog": 0.0, "car": 0.0},
        "b.jpg": {"cat": 0.0, "dog": 1.0, "car": 0.0},
        "c.jpg": {"cat": 0.0, "dog": 0.0, "car": 1.0}}
    exhaustive.close()
    partial = Store.open(tmp_path / "p2")
    import_coco(partial, coco_file(tmp_path, {"negative_labels": [1]}), folder, partial=True)
    assert targets_by_name(partial) == {
        "a.jpg": {"cat": 1.0, "dog": UNKNOWN, "car": UNKNOWN},
        "b.jpg": {"cat": UNKNOWN, "dog": 1.0, "car": UNKNOWN},
        "c.jpg": {"cat": 0.0, "dog": UNKNOWN, "car": 1.0}}       # its own negatives still count
    partial.close()
    listed = Store.open(tmp_path / "p3")                          # exhaustive, but c lists its
    import_coco(listed, coco_file(tmp_path, {"negative_labels": []}), folder)  # negatives: none
    assert targets_by_name(listed)["c.jpg"] == {"cat": UNKNOWN, "dog": UNKNOWN, "car": 1.0}
    listed.close()


def test_csv_one_zero_and_empty(empty_project, folder):
    path = folder / "tags.csv"
    path.write_text("path,cat,dog\na.jpg,1,0\nb.jpg,,1\nc.jpg,0,\n")
    import_csv(empty_project, path)
    assert targets_by_name(empty_project) == {
        "a.jpg": {"cat": 1.0, "dog": 0.0}, "b.jpg": {"cat": UNKNOWN, "dog": 1.0},
        "c.jpg": {"cat": 0.0, "dog": UNKNOWN}}


def test_xmp_keywords_are_partial(empty_project, folder):
    (folder / "a.jpg.xmp").write_text(XMP.format("Fox"), encoding="utf-8")
    (folder / "b.jpg.xmp").write_text(XMP.format("Heron"), encoding="utf-8")
    scan_folder(empty_project, folder)
    import_xmp(empty_project, sources=("sidecar",))
    assert targets_by_name(empty_project) == {
        "a.jpg": {"Fox": 1.0, "Heron": UNKNOWN}, "b.jpg": {"Fox": UNKNOWN, "Heron": 1.0}}


def test_cli_import_coco_partial_and_train_flags(tmp_path, folder, capsys):
    from engine.cli.main import main

    project = tmp_path / "cli"
    assert main(["--project", str(project), "init"]) == 0
    assert main(["--project", str(project), "import-coco", str(coco_file(tmp_path)),
                 "--images", str(folder), "--partial"]) == 0
    store = Store.open(project)
    matrix = store.tags.label_matrix()
    assert int(matrix.known.sum()) == 3                       # the three positives only
    store.close()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--untagged-as-negative" in shown and "--unknown-weight W" in shown


def test_targets_are_float32_with_unknown(empty_project, folder):
    scan_folder(empty_project, folder)
    a = empty_project.images.ids()[0]
    cat = empty_project.classes.ensure(["cat", "dog"])[0].id
    empty_project.tags.set(a, cat, "positive")
    targets = empty_project.tags.label_matrix().targets()
    assert targets.dtype == np.float32 and targets.tolist() == [[1.0, UNKNOWN]]


def test_a_config_stored_before_label_states_resumes_untagged_as_negative():
    from engine.training.api import TrainConfig

    stored = TrainConfig(stage="student").to_dict()
    assert not TrainConfig.from_dict(stored).untagged_as_negative
    stored.pop("untagged_as_negative"), stored.pop("unknown_weight")
    assert TrainConfig.from_dict(stored).untagged_as_negative
