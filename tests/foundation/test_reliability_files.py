"""Hostile files in a folder or a CSV (issue 15 items 10, 11): a FIFO or a link to /dev/zero is
reported unreadable instead of hanging the hash; a file name that is not UTF-8 does not crash
`add-folder`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.exchange.csv_tags import import_csv
from engine.intake import scan_folder
from engine.store import Store

from .reliability_helpers import write_images

ROOT = Path(__file__).resolve().parents[2]


def test_fifo_and_dev_zero_do_not_hang(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, ["good.png"])
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    with Store.open(tmp_path / "p") as store:
        report = scan_folder(store, folder)
        reasons = {Path(p).name: r for p, r in report.unreadable}
        assert reasons == {"zero.jpg": "not a regular file"}  # the FIFO is not even listed
        (tmp_path / "t.csv").write_text("path,split,cat\nimgs/pipe.jpg,,1\nimgs/zero.jpg,,1\n")
        summary = import_csv(store, tmp_path / "t.csv")
        assert len(summary.unreadable) == 2


def test_add_folder_with_a_name_that_is_not_utf8(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, ["good.png"])
    (folder / "good.png").rename(os.fsdecode(bytes(folder) + b"/bad\xff.png"))
    write_images(folder, ["ok.png"])
    env = dict(os.environ, LC_ALL="C.UTF-8", PYTHONPATH=str(ROOT))
    env.pop("PYTHONIOENCODING", None)
    project = tmp_path / "p"
    subprocess.run([sys.executable, "-m", "engine", "--project", str(project), "init"], env=env,
                   check=True, capture_output=True, timeout=120)
    result = subprocess.run([sys.executable, "-m", "engine", "--project", str(project),
                             "add-folder", str(folder)], env=env, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"not valid UTF-8" in result.stdout
