"""First run on a bare Debian: the missing Qt system libraries are named with one apt line
before Qt would abort with its generic xcb error."""

from __future__ import annotations

import io
import stat

from app import system_check


def fake_ldd(tmp_path, missing):
    script = tmp_path / "ldd"
    lines = "\\n".join([f"\\t{name} => not found" for name in missing]
                      + ["\\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x0)"])
    script.write_text(f"#!/bin/sh\nprintf '{lines}\\n'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_missing_libraries_become_one_apt_line(tmp_path, monkeypatch):
    ldd = fake_ldd(tmp_path, ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0"])
    library = tmp_path / "libqxcb.so"
    library.write_bytes(b"")
    missing = system_check.missing_libraries([library, library], ldd=ldd)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0"]
    assert system_check.apt_line(missing) == (
        "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1")

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(system_check.sys, "platform", "linux")
    monkeypatch.setattr(system_check, "missing_libraries", lambda: missing)
    out = io.StringIO()
    assert system_check.check(out) is False
    text = out.getvalue()
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in text
    assert text.count("apt-get") == 1


def test_nothing_to_say_when_all_is_there_or_no_window_is_asked_for(tmp_path, monkeypatch):
    ldd = fake_ldd(tmp_path, [])
    library = tmp_path / "libqxcb.so"
    library.write_bytes(b"")
    assert system_check.missing_libraries([library], ldd=ldd) == []
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(system_check, "missing_libraries", lambda: ["libxcb-icccm.so.4"])
    assert system_check.check(io.StringIO()) is True            # offscreen needs no xcb
    assert set(system_check.README_PACKAGES) <= set(system_check.PACKAGES.values())


def test_this_machine_passes_the_check():
    assert system_check.missing_libraries() == []
