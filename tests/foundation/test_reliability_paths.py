"""Paths in imports stay inside the project's folders (issue 15 item 6): a CSV row naming
'../../etc/passwd' registers nothing, and `export xmp --in-place` writes only next to images."""

from __future__ import annotations

import pytest

from engine.cli.main import main
from engine.errors import UserError
from engine.exchange.csv_tags import import_csv
from engine.exchange.xmp import export_xmp
from engine.store import Store

from .reliability_helpers import snapshot, write_images


def test_csv_path_outside_the_project_is_refused(db_url, tmp_path):
    secret = tmp_path / "secret" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0\n")
    write_images(tmp_path / "work" / "imgs", ["a.png"])
    csv_file = tmp_path / "work" / "tags.csv"
    csv_file.write_text("path,split,cat\nimgs/a.png,,1\n../secret/passwd,,1\n")
    with Store.open(tmp_path / "files", db_url=db_url) as store:
        before = snapshot(store)
        with pytest.raises(UserError, match="outside the project"):
            import_csv(store, csv_file)
        assert snapshot(store) == before
        # the folder the user names is allowed
        summary = import_csv(store, csv_file, images_dir=tmp_path / "secret")
        assert summary.images == 2


def test_cli_refuses_traversal_with_one_line(tmp_path, capsys):
    write_images(tmp_path / "work", ["a.png"])
    csv_file = tmp_path / "work" / "tags.csv"
    project = tmp_path / "p"
    assert main(["--project", str(project), "init"]) == 0
    for hostile in ("../../../../../../etc/passwd", "/etc/passwd"):
        csv_file.write_text(f"path,split,cat\na.png,,1\n{hostile},,1\n")
        capsys.readouterr()
        assert main(["--project", str(project), "import-csv", str(csv_file)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mlic: error:") and "outside" in err


def test_in_place_xmp_writes_only_next_to_images(tmp_path):
    from engine.store.schema import Image

    write_images(tmp_path / "imgs", ["a.png"])
    (tmp_path / "notes.txt").write_text("keep me\n")
    with Store.open(tmp_path / "p") as store:
        from engine.intake import scan_folder

        scan_folder(store, tmp_path / "imgs")
        root = store.roots.list()[0]
        cat = store.classes.ensure(["cat"])[0]
        ids = store.images.add_many([{"root_id": root.id, "rel_path": "../notes.txt",
                                      "content_hash": "x", "width": 1, "height": 1}])
        from engine.store import TagEdit

        store.tags.apply([TagEdit(i, cat.id, "positive") for i in store.images.ids()])
        export_xmp(store, in_place=True)
        assert (tmp_path / "imgs" / "a.png.xmp").is_file()
        assert not (tmp_path / "notes.txt.xmp").exists()
        assert Image and ids
