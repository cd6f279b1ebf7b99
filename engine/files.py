"""Atomic file output: the one way the engine (and the app's thumbnail cache) writes a file.

Every writer opens a temporary file beside the target, writes, and renames it into place with
`os.replace`, so a crash, a full disk or an exception mid-write leaves the previous file (or none)
and never a torn one; the temporary file is removed on failure.

- `atomic_output(path, mode)`: the context manager every writer uses ("w" text or "wb" binary).
- The file gets the mode an ordinary `open()` would give it: an existing file keeps its mode, a
  new one gets 0666 less the umask (not `mkstemp`'s 0600).
- A temporary file is named `.<name>.mlic-<host>-<pid>-<random>.tmp`. One left behind by a
  process that was killed (kill -9 during a checkpoint write) is removed by the next atomic
  write into that folder in any later process, and by `clean_stale_temporaries(folder)` (the
  store calls it on the models folder when a project opens): only when its process is gone
  (same host) or it is a day old (another host, or the old unnamed form), never a live writer's.
- `write_text_atomic(path, text)` / `write_json_atomic(path, data)`: user-facing outputs (exports,
  reports); an OS error becomes a `UserError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from engine.errors import UserError

__all__ = ["atomic_output", "clean_stale_temporaries", "write_json_atomic", "write_text_atomic"]

_TEMPORARY = re.compile(r"^\..+\.mlic-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[^.]*\.tmp$")
_UNNAMED_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # mkstemp's form before owners
_FOREIGN_AGE_S = 24 * 3600
_cleaned_folders: set[str] = set()
_cleaned_lock = threading.Lock()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _stale(entry: os.DirEntry[str], now: float) -> bool:
    match = _TEMPORARY.match(entry.name)
    if match is None and _UNNAMED_TEMPORARY.match(entry.name) is None:
        return False
    if match is not None and match["host"] == _host():
        return int(match["pid"]) != os.getpid() and not _alive(int(match["pid"]))
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > _FOREIGN_AGE_S
    except OSError:
        return False


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files our atomic writes left in `folder` when their process died
    (module doc); returns those removed. A folder that cannot be read or written is left as it is."""
    removed = []
    now = time.time()
    try:
        with os.scandir(folder) as entries:
            stale = [Path(entry.path) for entry in entries
                     if entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False)
                     and _stale(entry, now)]
    except OSError:
        return removed
    for path in stale:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _clean_once(folder: Path) -> None:
    key = str(folder.absolute())
    with _cleaned_lock:
        if key in _cleaned_folders:
            return
        _cleaned_folders.add(key)
    clean_stale_temporaries(folder)


@contextmanager
def atomic_output(path: str | Path, mode: str = "w", *, durable: bool = False) -> Iterator[IO[Any]]:
    """Yield a file open in `mode` ("w" or "wb") that replaces `path` when the block ends without
    an exception. The parent folder is created when missing. `durable`: fsync before the rename
    (checkpoints, where losing the last epoch to a power cut matters)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_output: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.mlic-{_host()}-{os.getpid()}-", suffix=".tmp")
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(handle, mode, **text) as file:
            yield file
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.chmod(temporary, _target_mode(path))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """The mode of the file at `path` when it exists, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8, line endings as given) to `path` atomically; UserError on failure."""
    try:
        with atomic_output(path, "w") as file:
            file.write(text)
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


def json_safe(data: Any) -> Any:
    """`data` (dicts, lists, tuples, scalars) with each float JSON cannot hold (NaN, +-inf) as None,
    which JSON writes as null: a figure that could not be measured, such as the AP of a class
    with no decided negative. PostgreSQL's json type rejects NaN outright."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def strict_json_dumps(data: Any, indent: int | None = None) -> str:
    """`data` as strict JSON text: non-finite floats become null (`json_safe`)."""
    return json.dumps(json_safe(data), indent=indent, allow_nan=False)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write `data` as strict JSON (no NaN) with a final newline, atomically; UserError on failure."""
    write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")
