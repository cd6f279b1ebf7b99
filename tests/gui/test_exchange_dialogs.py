"""The File menu's exchange dialogs, driven with pytest-qt on a folder of photos whose keywords
exiftool wrote the way Lightroom does: import keywords (preview = the vocabulary step), write
them back embedded (preview, write, undo), CSV export and import preview."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from engine.intake import scan_folder
from engine.store import Store
from tests.gui.conftest import open_window

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="needs exiftool")
KEYWORDS = {"a.jpg": ["Animals|Birds|Heron", "People|Ada"], "b.jpg": ["Animals|Mammals|Fox"],
            "c.jpg": ["Animals|Birds|Heron"], "d.jpg": ["Animals|Mammals|Fox", "Places|Lake"]}


@pytest.fixture
def photo_project(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, (name, paths) in enumerate(KEYWORDS.items()):
        array = (np.random.default_rng(k).random((48, 64, 3)) * 255).astype("uint8")
        Image.fromarray(array).save(folder / name)
        levels = sorted({level for path in paths for level in path.split("|")})
        subprocess.run([EXIFTOOL, "-q", "-q", "-overwrite_original",
                        *[f"-XMP-dc:Subject={s}" for s in levels],
                        *[f"-XMP-lr:HierarchicalSubject={p}" for p in paths],
                        *[f"-IPTC:Keywords={s}" for s in levels], str(folder / name)], check=True)
    store = Store.open(tmp_path / "project")
    scan_folder(store, folder)
    store.close()
    return tmp_path / "project", folder


def menu_action(window, text: str):
    file_menu = window.menuBar().actions()[0].menu()
    return next(a for a in file_menu.actions() if a.text() == text)


def subjects(path) -> set[str]:
    out = subprocess.run([EXIFTOOL, "-j", "-XMP-dc:Subject", str(path)], capture_output=True,
                         text=True, check=True).stdout
    value = json.loads(out)[0].get("Subject", [])
    return set(value if isinstance(value, list) else [value])


def wait_idle(qtbot, dialog) -> None:
    qtbot.waitUntil(lambda: not dialog.jobs.busy, timeout=30000)


def test_import_keywords_and_write_back(qtbot, photo_project, settings, errors):
    project, folder = photo_project
    window = open_window(qtbot, project, settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=30000)
    menu_action(window, "Import &Keywords…").trigger()
    dialog = window._exchange_dialogs["import-keywords"]
    dialog.exclude.setText("People")
    qtbot.mouseClick(dialog.preview_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, dialog)
    rows = {dialog.table.item(r, 1).text(): r for r in range(dialog.table.rowCount())}
    assert dialog.table.item(rows["Heron"], 3).text() == "2"
    assert dialog.table.item(rows["Ada"], 4).text() == "excluded"
    dialog.table.item(rows["Lake"], 0).setCheckState(Qt.CheckState.Unchecked)   # leave out
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, dialog)
    assert dialog.summary.text().startswith("Imported")
    qtbot.waitUntil(lambda: {c.name for c in window.state.classes.values()} >= {"Heron", "Fox"})
    names = {c.name for c in window.state.classes.values()}
    assert "Ada" not in names and "Lake" not in names

    menu_action(window, "&Write Keywords Back…").trigger()
    writer = window._exchange_dialogs["write-keywords"]
    writer.embedded.setChecked(True)
    store = Store.open(project)
    ids = {p.name: i for i, p in store.images.paths(store.images.ids()).items()}
    from engine.store import TagEdit
    store.tags.apply([TagEdit(ids["a.jpg"], store.classes.get("Fox").id, "positive"),
                      TagEdit(ids["a.jpg"], store.classes.get("Heron").id, "negative")])
    store.close()
    before = (folder / "a.jpg").read_bytes()
    qtbot.mouseClick(writer.preview_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, writer)
    assert writer.table.rowCount() == 1 and writer.table.item(0, 1).text() == "embedded"
    assert (folder / "a.jpg").read_bytes() == before
    qtbot.mouseClick(writer.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, writer)
    assert subjects(folder / "a.jpg") == {"Animals", "Birds", "Mammals", "Fox", "People", "Ada"}
    qtbot.mouseClick(writer.undo_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, writer)
    assert (folder / "a.jpg").read_bytes() == before and "Put back 1" in writer.summary.text()
    window.close()
    assert errors == []


def test_csv_dialogs(qtbot, photo_project, settings, errors, tmp_path):
    project, _folder = photo_project
    window = open_window(qtbot, project, settings)
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=30000)
    menu_action(window, "Export CSV…").trigger()
    export = window._exchange_dialogs["export-csv"]
    export.path.setText(str(tmp_path / "tags.csv"))
    qtbot.mouseClick(export.preview_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, export)
    assert "4 images" in export.summary.text()
    qtbot.mouseClick(export.run_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, export)
    assert (tmp_path / "tags.csv").is_file()
    menu_action(window, "Import CSV…").trigger()
    importer = window._exchange_dialogs["import-csv"]
    (tmp_path / "in.csv").write_text("path,split,cat,dog\n", encoding="utf-8")
    importer.path.setText(str(tmp_path / "in.csv"))
    qtbot.mouseClick(importer.preview_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, importer)
    assert importer.table.rowCount() == 2 and importer.summary.text() == "2 classes, 2 new"
    window.close()
    assert errors == []
