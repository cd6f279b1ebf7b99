"""The `mlic` command line: project commands, output formats, exit codes, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.store import Store

from .files import gradient_rgb, write_bad

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def mlic(capsys, project: Path, *argv: str) -> tuple[int, str, str]:
    """Run `mlic --project PROJECT ARGV...`; a project that does not exist yet is made first with
    `init` (only `init` creates projects), except for `init` and `demo` themselves."""
    if argv and argv[0] not in ("init", "demo") and not (Path(project) / "project.sqlite").exists():
        assert main(["--project", str(project), "init"]) == 0
        capsys.readouterr()
    code = main(["--project", str(project), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_and_status_of_empty_project(tmp_path, capsys):
    code, out, err = mlic(capsys, tmp_path / "p", "init")
    assert code == 0 and "Project ready" in out and err == ""
    assert (tmp_path / "p" / "project.sqlite").is_file()
    code, out, _ = mlic(capsys, tmp_path / "p", "status")
    assert code == 0
    assert "Images: 0" in out and "Splits: train 0, val 0, test 0, unassigned 0" in out


def test_demo_then_import_then_status_and_exports(tmp_path, capsys):
    project = tmp_path / "p"
    code, out, _ = mlic(capsys, project, "demo", str(tmp_path / "demo"), "--images", "20",
                        "--seed", "4")
    assert code == 0
    commands = [line.strip() for line in out.splitlines() if "import-coco" in line]
    assert len(commands) == 3 and all(f"--project {project}" in c for c in commands)
    assert not (project / "project.sqlite").exists()  # demo only writes files
    for split in ("train", "val", "test"):
        code, out, _ = mlic(capsys, project, "import-coco", str(tmp_path / "demo" / f"{split}.json"),
                            "--images", str(tmp_path / "demo" / "images"), "--split", split)
        assert code == 0 and "images" in out
    code, out, _ = mlic(capsys, project, "status")
    assert "Images: 20 (20 readable, 0 unreadable" in out
    assert "Splits: train 14, val 3, test 3, unassigned 0" in out
    assert "Tags by source: import" in out and "striped_circle" in out

    code, out, _ = mlic(capsys, project, "classes")
    assert code == 0 and out.splitlines()[0] == "striped_circle" and len(out.splitlines()) == 12

    code, out, _ = mlic(capsys, project, "export", "csv", str(tmp_path / "t.csv"))
    assert code == 0
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0][:3] == ["path", "split", "striped_circle"] and len(rows) == 21
    code, _, _ = mlic(capsys, project, "export", "coco", str(tmp_path / "t.json"))
    assert code == 0 and len(json.loads((tmp_path / "t.json").read_text())["images"]) == 20
    code, out, _ = mlic(capsys, project, "export", "xmp", str(tmp_path / "x"))
    assert code == 0 and len(list((tmp_path / "x").rglob("*.xmp"))) == 20

    fresh = tmp_path / "fresh"
    code, out, _ = mlic(capsys, fresh, "import-csv", str(tmp_path / "t.csv"))
    assert code == 0
    code, out, _ = mlic(capsys, fresh, "status")
    assert "Splits: train 14, val 3, test 3" in out
    code, _, _ = mlic(capsys, fresh, "import-xmp", "--from", str(tmp_path / "x"))
    assert code == 0


def test_add_folder_lists_unreadable_files(tmp_path, capsys):
    folder = tmp_path / "imgs"
    expected = write_bad(folder)
    gradient_rgb().save(folder / "good.jpg")
    code, out, err = mlic(capsys, tmp_path / "p", "add-folder", str(folder), "--split", "val")
    assert code == 0
    assert f"{len(expected) + 1} images: {len(expected) + 1} added" in out
    assert out.count("unreadable: ") == len(expected)
    code, out, _ = mlic(capsys, tmp_path / "p", "status")
    assert f"{len(expected)} unreadable" in out and "Unreadable files:" in out
    assert "truncated" in out
    code, out, _ = mlic(capsys, tmp_path / "p", "add-folder", str(folder))
    assert "0 added" in out and "0 vanished" in out


def test_classes_add_with_parent(tmp_path, capsys):
    code, out, _ = mlic(capsys, tmp_path / "p", "classes", "--add", "animal")
    code, out, _ = mlic(capsys, tmp_path / "p", "classes", "--add", "cat", "dog",
                        "--parent", "animal")
    assert code == 0 and out.splitlines() == ["animal", "cat", "dog"]
    store = Store.open(tmp_path / "p")
    assert store.classes.get("cat").parent_id == store.classes.get("animal").id
    store.close()


@pytest.mark.parametrize("argv, message", [
    (["add-folder", "/no/such/folder"], "does not exist"),
    (["import-coco", "/no/such.json", "--images", "/tmp"], "does not exist"),
    (["import-csv", "/no/such.csv"], "does not exist"),
    (["export", "xmp"], "needs OUT"),
    (["export", "csv"], "needs OUT"),
    (["export", "csv", "/no/such/dir/out.csv"], "does not exist"),
    (["export", "coco", "x.json", "--in-place"], "--in-place"),
    (["classes", "--add", "a,b"], "Invalid class name"),
    (["classes", "--parent", "x"], "--parent needs --add"),
    (["demo", "/tmp/x", "--images", "1"], "at least 3"),
    (["train", "--workers", "-1"], "Workers must be 0 or more"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, out, err = mlic(capsys, tmp_path / "p", *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mlic: error: ") and message in err


def test_bad_coco_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "categories": [{"id": 1}]}')
    code, _, err = mlic(capsys, tmp_path / "p", "import-coco", str(bad), "--images", str(tmp_path))
    assert code == 2 and "category" in err
    code, out, _ = mlic(capsys, tmp_path / "p", "classes")
    assert out == ""


def test_usage_error_exit_status():
    with pytest.raises(SystemExit) as caught:
        main(["--project", "/tmp/x", "export", "pdf", "out"])
    assert caught.value.code == 2


def test_python_dash_m_engine(tmp_path):
    Store.open(tmp_path / "p").close()
    result = subprocess.run([sys.executable, "-m", "engine", "--project", str(tmp_path / "p"),
                             "add-folder", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("mlic: error: Folder")


def test_fast_proposals_preset_reaches_the_training_config():
    from engine.cli.main import build_parser
    from engine.cli.train import config_from_args
    from engine.proposals import get_source

    parser = build_parser()
    fast = config_from_args(parser.parse_args(["train", "--fast-proposals"]))
    source = get_source(fast.proposals, **fast.proposal_params)
    default = config_from_args(parser.parse_args(["train"]))
    plain = get_source(default.proposals, **default.proposal_params)
    assert source.name == plain.name == "selective_search"
    assert source.max_side < plain.max_side and source.cache_key() != plain.cache_key()
