"""Reliability of imports (issue 15): re-importing the project's own export is idempotent (item 3);
an import validates everything first and writes in one transaction, so a bad file or a failure
part-way leaves the project as it was (item 4). SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json

import pytest

import engine.exchange as exchange
from engine.errors import UserError
from engine.exchange.coco import export_coco, import_coco
from engine.exchange.csv_tags import export_csv, import_csv
from engine.intake import scan_folder
from engine.store import Store, TagEdit

from .reliability_helpers import snapshot, write_images


@pytest.fixture
def two_roots(db_url, tmp_path):
    base = tmp_path / "photos"
    write_images(base / "a", ["1.png", "2.png", "3.png"])
    write_images(base / "b", ["4.png", "5.png"])
    store = Store.open(tmp_path / "files", db_url=db_url)
    scan_folder(store, base / "a", split="train")
    scan_folder(store, base / "b", split="test")
    cat, dog = store.classes.ensure(["cat", "dog"])
    ids = store.images.ids()
    store.tags.apply([TagEdit(ids[0], cat.id, "positive"), TagEdit(ids[3], dog.id, "negative")])
    yield store, base
    store.close()


def test_reimporting_own_coco_export_is_idempotent(two_roots, tmp_path):
    store, base = two_roots
    export_coco(store, tmp_path / "out.json")
    before = sorted((i.id, i.split) for i in store.images.list())
    summary = import_coco(store, tmp_path / "out.json", base)
    assert summary.images == 5 and not summary.missing
    assert store.images.count() == 5
    assert sorted((i.id, i.split) for i in store.images.list()) == before
    assert len(store.roots.list()) == 2


def test_reimporting_own_csv_export_is_idempotent(two_roots, tmp_path):
    store, _ = two_roots
    export_csv(store, tmp_path / "out.csv")
    import_csv(store, tmp_path / "out.csv")
    assert store.images.count() == 5 and len(store.roots.list()) == 2


def _coco(names: list[str], bbox: list) -> dict:  # noqa: ANN001
    return {"images": [{"id": k + 1, "file_name": n} for k, n in enumerate(names)],
            "categories": [{"id": 1, "name": "star"}, {"id": 2, "name": "ring"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": bbox}]}


@pytest.mark.parametrize("bad", [[1, 1, float("nan"), 4], [1, float("inf"), 2, 2]])
def test_nan_box_is_refused_before_any_write(two_roots, tmp_path, bad):
    store, base = two_roots
    write_images(tmp_path / "new", ["x.png", "y.png"])
    (tmp_path / "c.json").write_text(json.dumps(_coco(["x.png", "y.png"], bad)))
    before = snapshot(store)
    with pytest.raises(UserError, match="finite"):
        import_coco(store, tmp_path / "c.json", tmp_path / "new")
    assert snapshot(store) == before


@pytest.mark.parametrize("kind", ["coco", "csv"])
def test_failure_part_way_leaves_the_project_as_it_was(two_roots, tmp_path, monkeypatch, kind):
    store, base = two_roots
    write_images(tmp_path / "new", ["x.png", "y.png"])
    (tmp_path / "c.json").write_text(json.dumps(_coco(["x.png", "y.png"], [0, 0, 2, 2])))
    (tmp_path / "c.csv").write_text("path,split,star,cat\nnew/x.png,val,1,0\nnew/y.png,,0,1\n")
    before = snapshot(store)

    def crash(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("simulated crash after classes and images were written")

    for module in ("engine.exchange.coco", "engine.exchange.csv_tags"):
        monkeypatch.setattr(f"{module}.apply_import_tags", crash)
    with pytest.raises(OSError):
        if kind == "coco":
            import_coco(store, tmp_path / "c.json", tmp_path / "new")
        else:
            import_csv(store, tmp_path / "c.csv")
    assert snapshot(store) == before
    monkeypatch.undo()
    if kind == "coco":
        summary = import_coco(store, tmp_path / "c.json", tmp_path / "new")
    else:
        summary = import_csv(store, tmp_path / "c.csv")
    assert summary.images == 2 and store.images.count() == 7
    assert exchange.atomic_import  # the shared runner every importer goes through
