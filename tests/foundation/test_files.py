"""engine.files: every output is replaced whole or not at all."""

from __future__ import annotations

import json

import pytest

from engine.errors import UserError
from engine.files import atomic_output, write_json_atomic, write_text_atomic


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target, "w") as file:
        file.write("half a new fi")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_binary_output_creates_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "blob.bin"
    with atomic_output(target, "wb", durable=True) as file:
        file.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_text_keeps_line_endings_and_json_is_strict(tmp_path):
    write_text_atomic(tmp_path / "t.txt", "a\r\nb\n")
    assert (tmp_path / "t.txt").read_bytes() == b"a\r\nb\n"
    write_json_atomic(tmp_path / "d.json", {"x": [1, 2]}, indent=None)
    assert json.loads((tmp_path / "d.json").read_text()) == {"x": [1, 2]}
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_unwritable_target_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="Cannot write"):
        write_text_atomic(blocker / "inside.txt", "x")
