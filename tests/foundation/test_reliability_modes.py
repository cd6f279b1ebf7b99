"""Output files honour the umask and keep an existing file's mode; credentials never show in a
message (issue 15 item 8)."""

from __future__ import annotations

import os

import pytest

from engine.errors import UserError
from engine.files import write_text_atomic
from engine.store import Store


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_file_honours_umask_and_existing_keeps_mode(tmp_path, umask_022):
    new = tmp_path / "new.csv"
    write_text_atomic(new, "x\n")
    assert new.stat().st_mode & 0o777 == 0o644
    os.umask(0o027)
    other = tmp_path / "other.csv"
    write_text_atomic(other, "x\n")
    assert other.stat().st_mode & 0o777 == 0o640
    existing = tmp_path / "photo.jpg.xmp"
    existing.write_text("old")
    existing.chmod(0o664)
    write_text_atomic(existing, "merged")
    assert existing.stat().st_mode & 0o777 == 0o664 and existing.read_text() == "merged"


def test_sidecar_merge_keeps_0644(tmp_path, umask_022):
    from engine.exchange.xmp import export_xmp
    from engine.intake import scan_folder
    from engine.store import TagEdit

    from .reliability_helpers import write_images

    write_images(tmp_path / "imgs", ["a.png"])
    sidecar = tmp_path / "imgs" / "a.png.xmp"
    with Store.open(tmp_path / "p") as store:
        scan_folder(store, tmp_path / "imgs")
        cat = store.classes.ensure(["cat"])[0]
        store.tags.apply([TagEdit(store.images.ids()[0], cat.id, "positive")])
        export_xmp(store, in_place=True)
        assert sidecar.stat().st_mode & 0o777 == 0o644
        sidecar.chmod(0o644)
        export_xmp(store, in_place=True)
        assert sidecar.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("url", ["postgresql+nosuchdriver://alice:s3cr3t@db.example/x",
                                 "mysql+nosuchdriver://alice:s3cr3t@localhost/x"])
def test_driver_errors_mask_the_password(url, tmp_path, capsys):
    from engine.cli.main import main

    with pytest.raises(UserError) as caught:
        Store.open(db_url=url)
    assert "s3cr3t" not in str(caught.value) and "***" in str(caught.value)
    assert main(["--db-url", url, "status"]) == 2
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and err.count("\n") == 1
