"""Spreadsheet formula injection (issue 15 item 7): class and file names starting with = + - @
are quoted with a leading ' in `export csv` and `mlic tag` CSVs (raw with --raw-csv), and an
import reads them back exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.exchange.csv_tags import from_spreadsheet, import_csv, spreadsheet_safe
from engine.intake import scan_folder
from engine.store import Store, TagEdit

from .reliability_helpers import write_images

HOSTILE = ["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "'=already", "plain", "'", ""]


@pytest.mark.parametrize("text", HOSTILE + ["\tx", "\rx", "''-x"])
def test_quote_round_trip(text):
    quoted = spreadsheet_safe(text)
    assert not quoted.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert from_spreadsheet(quoted) == text


def test_export_csv_quotes_formulas_and_round_trips(tmp_path, capsys):
    write_images(tmp_path / "imgs", ["=cmd.png", "-rm.png", "ok.png"])
    project = tmp_path / "p"
    with Store.open(project) as store:
        scan_folder(store, tmp_path / "imgs")
        classes = store.classes.ensure(["=SUM(A1)", "@evil", "cat"])
        store.tags.apply([TagEdit(i, c.id, "positive") for i in store.images.ids()
                          for c in classes])
    out = tmp_path / "out" / "tags.csv"
    out.parent.mkdir()
    assert main(["--project", str(project), "export", "csv", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "split", "'=SUM(A1)", "'@evil", "cat"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    raw = tmp_path / "out" / "raw.csv"
    assert main(["--project", str(project), "export", "csv", str(raw), "--raw-csv"]) == 0
    assert list(csv.reader(raw.open()))[0] == ["path", "split", "=SUM(A1)", "@evil", "cat"]
    with Store.open(tmp_path / "fresh") as fresh:
        summary = import_csv(fresh, out)
        assert summary.images == 3
        assert sorted(fresh.classes.names()) == sorted(["=SUM(A1)", "@evil", "cat"])
        names = sorted(Path(p).name for p in fresh.images.paths(fresh.images.ids()).values())
        assert names == ["-rm.png", "=cmd.png", "ok.png"]


def test_predictions_csv_quotes_formulas(tmp_path):
    from engine.inference.tagging import TaggingResult, write_predictions_csv

    result = TaggingResult.__new__(TaggingResult)
    result.class_names = ["=cmd", "cat"]
    result.paths = [tmp_path / "-x.png"]
    result.probabilities = np.array([[0.5, 0.25]])
    write_predictions_csv(result, tmp_path / "p.csv", tmp_path)
    assert list(csv.reader((tmp_path / "p.csv").open())) == [
        ["path", "'=cmd", "cat"], ["'-x.png", "0.500000", "0.250000"]]
    write_predictions_csv(result, tmp_path / "r.csv", tmp_path, raw=True)
    assert list(csv.reader((tmp_path / "r.csv").open()))[0] == ["path", "=cmd", "cat"]
