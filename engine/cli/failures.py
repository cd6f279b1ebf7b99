"""One clear line for failures of the machine rather than of the user's input: a full disk, a
read-only, busy or damaged project database, a database server that went away.

`failure_message(exc)` is the sentence `mlic` prints after `mlic: error:` (exit status 2), or None
for an exception that is a bug (which keeps its traceback). The database's own words are kept,
first line only and with any password masked; nothing is retried or repaired here, so a damaged
file is left exactly as it was for the user (or a backup tool) to recover.
"""

from __future__ import annotations

import errno

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_MACHINE_ERRNOS = (*_DISK_FULL, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM)
_DISK_FULL_WORDS = ("database or disk is full", "no space left on device", "disk quota")
_DAMAGED_WORDS = ("malformed", "file is not a database", "file is encrypted", "disk image")
_READ_ONLY_WORDS = ("readonly database", "read-only")
# Another writer held the database longer than the busy timeout, even after the writes were run
# again (engine.store.database.is_write_conflict): a moment's wait, not damage.
_BUSY_WORDS = ("database is locked", "database is busy", "deadlock detected", "could not serialize",
               "lock timeout")


def failure_message(exc: BaseException) -> str | None:
    """The one-line message for `exc`, or None when it is not a machine failure."""
    if isinstance(exc, OSError) and exc.errno in _MACHINE_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in _DISK_FULL:
            return (f"The disk is full{where}; the command stopped and what the project held "
                    "before is kept. Free some space and run it again.")
        return f"{exc.strerror or exc}{where}."
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return None
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return None
    from engine.store.database import mask_url

    detail = mask_url((str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0])
    lowered = detail.lower()
    if any(words in lowered for words in _DISK_FULL_WORDS):
        return (f"The disk is full ({detail}); the command stopped and what the project held "
                "before is kept. Free some space and run it again.")
    if any(words in lowered for words in _DAMAGED_WORDS):
        return (f"The project database is damaged ({detail}); it was left as it is. "
                "Restore it from a backup.")
    if any(words in lowered for words in _BUSY_WORDS):
        return (f"The project database is busy: another program is writing to it ({detail}). "
                "Nothing of this step was written; try again in a moment.")
    if any(words in lowered for words in _READ_ONLY_WORDS):
        return f"The project is read-only ({detail}); this command needs to write to it."
    return f"The project database failed: {detail}."
