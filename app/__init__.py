"""The mlic desktop app (PySide6). Talks to the engine only through its public API, and only from
background workers (`app.workers`): the GUI thread never waits on disk, database or GPU."""

