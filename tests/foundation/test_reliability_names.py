"""Class names with control characters (NUL crashes PostgreSQL, the others make ill-formed XMP)
are refused at every entry: the store (which the CLI and the GUI's dialogs call), COCO and CSV
imports before any write (issue 15 item 9). SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from engine.cli.main import main
from engine.errors import UserError
from engine.exchange.coco import import_coco
from engine.exchange.csv_tags import import_csv
from engine.store import Store

from .reliability_helpers import snapshot, write_images

BAD = ["nul\x00name", "bell\x07", "esc\x1b[31m", "tab\tin", "del\x7f", "sur\udc80"]


@pytest.mark.parametrize("name", BAD)
def test_store_refuses_control_characters(db_url, tmp_path, name):
    with Store.open(tmp_path / "f", db_url=db_url) as store:
        cat = store.classes.ensure(["cat"])[0]
        before = snapshot(store)
        with pytest.raises(UserError, match="control characters"):
            store.classes.ensure([name])
        with pytest.raises(UserError, match="control characters"):
            store.classes.update(cat.id, name=name)
        assert snapshot(store) == before


def test_cli_classes_add_is_one_line(tmp_path, capsys):
    project = tmp_path / "p"
    assert main(["--project", str(project), "init"]) == 0
    capsys.readouterr()
    assert main(["--project", str(project), "classes", "--add", "ok\x00bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlic: error: Invalid class name") and err.count("\n") == 1


def test_imports_refuse_before_any_write(db_url, tmp_path):
    write_images(tmp_path / "imgs", ["a.png"])
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
        "categories": [{"id": 1, "name": "fine"}, {"id": 2, "name": "bad\x00"}]}))
    (tmp_path / "imgs" / "t.csv").write_text("path,split,fine,bad\x01\na.png,,1,0\n")
    with Store.open(tmp_path / "f", db_url=db_url) as store:
        before = snapshot(store)
        with pytest.raises(UserError, match="control characters"):
            import_coco(store, tmp_path / "c.json", tmp_path / "imgs")
        with pytest.raises(UserError, match="control characters"):
            import_csv(store, tmp_path / "imgs" / "t.csv")
        assert snapshot(store) == before
