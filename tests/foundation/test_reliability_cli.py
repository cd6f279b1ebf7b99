"""What a typo must not cost (issue 15 item 5): `demo` refuses a non-empty folder, only `init`
creates a project, and an empty project's export does not replace a file without --force."""

from __future__ import annotations

from pathlib import Path

from engine.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "train.json").write_text("my own file\n")
    code, _, err = run(capsys, "demo", folder, "--images", "3")
    assert code == 2 and err.startswith("mlic: error:") and err.count("\n") == 1
    assert (folder / "train.json").read_text() == "my own file\n"
    assert sorted(p.name for p in folder.iterdir()) == ["train.json"]


def test_mistyped_project_is_an_error_not_a_new_project(tmp_path, capsys):
    good = tmp_path / "good"
    assert run(capsys, "--project", good, "init")[0] == 0
    for command in (["status"], ["export", "csv", tmp_path / "x.csv"], ["classes"]):
        code, _, err = run(capsys, "--project", tmp_path / "goood", *command)
        assert code == 2 and "is not a project" in err and err.count("\n") == 1
    assert not (tmp_path / "goood").exists()


def test_empty_export_needs_force_to_replace_a_file(tmp_path, capsys):
    project = tmp_path / "p"
    assert run(capsys, "--project", project, "init")[0] == 0
    for fmt, name in (("csv", "tags.csv"), ("coco", "tags.json")):
        good = tmp_path / name
        good.write_text("path,split,cat\n/a.jpg,train,1\n")
        code, _, err = run(capsys, "--project", project, "export", fmt, good)
        assert code == 2 and "--force" in err and err.count("\n") == 1
        assert good.read_text() == "path,split,cat\n/a.jpg,train,1\n"
        assert run(capsys, "--project", project, "export", fmt, good, "--force")[0] == 0
        assert good.read_text() != "path,split,cat\n/a.jpg,train,1\n"
    fresh = tmp_path / "new.csv"
    assert run(capsys, "--project", project, "export", "csv", fresh)[0] == 0
    assert Path(fresh).read_text() == "path,split\n"
